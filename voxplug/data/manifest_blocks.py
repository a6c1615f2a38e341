"""A large JSONL manifest cut into blocks of whole lines that can be read apart, for streamed training.

Planning reads the file once without parsing it (seeks to find line starts, ``bytes.count`` for line numbers), so it
costs a sequential read and a few dozen bytes per block whatever the row count; each rank and data-loader worker
then reads only its own blocks, seeking straight to them. A line belongs to the block it starts in, so every row is
in exactly one block.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxplug.data.interface import RowProblem
from voxplug.data.manifest import iter_jsonl_lines

BLOCK_BYTES = 256 * 1024
"""About how many bytes of the manifest one block holds (a couple of thousand rows of a typical manifest)."""
MIN_BLOCKS = 64
"""Blocks a manifest is cut into at least (while it has lines enough), so that many readers each get their own."""
_READ_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ManifestBlock:
    """Bytes ``start`` to ``end`` of a manifest: whole lines, the first of them line ``first_line``."""

    start: int
    end: int
    first_line: int


@dataclass(frozen=True)
class ManifestPlan:
    """A manifest's blocks in file order, and how many lines it has (blank ones included)."""

    blocks: tuple[ManifestBlock, ...]
    lines: int


def plan_blocks(path: Path, *, block_bytes: int = BLOCK_BYTES, min_blocks: int = MIN_BLOCKS) -> ManifestPlan:
    """Cut ``path`` into blocks of about ``block_bytes`` (at least ``min_blocks`` while lines allow)."""
    size = path.stat().st_size
    count = max(min_blocks, math.ceil(size / block_bytes))
    with path.open("rb") as handle:
        starts = [0]
        for index in range(1, count):
            start = _next_line_start(handle, index * size // count)
            if start >= size:
                break
            if start > starts[-1]:
                starts.append(start)
        first_lines, lines = _line_numbers(handle, starts)
    if size == 0:
        return ManifestPlan((), 0)
    ends = [*starts[1:], size]
    spans = zip(starts, ends, first_lines, strict=True)
    return ManifestPlan(tuple(ManifestBlock(start, end, first) for start, end, first in spans), lines)


def iter_block(path: Path, block: ManifestBlock) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    """``(line number, row)`` for each non-blank line of ``block``, as :func:`~voxplug.data.manifest.iter_jsonl`."""
    with path.open("rb") as handle:
        handle.seek(block.start)
        yield from iter_jsonl_lines(_lines_until(handle, block.end - block.start), path.name, start=block.first_line)


def _lines_until(handle: Any, length: int) -> Iterator[bytes]:
    read = 0
    while read < length:
        line = handle.readline()
        if not line:
            return
        read += len(line)
        yield line


def _next_line_start(handle: Any, offset: int) -> int:
    """The offset of the first line that starts at or after ``offset``."""
    if offset == 0:
        return 0
    handle.seek(offset - 1)
    position = offset - 1
    while chunk := handle.read(64 * 1024):
        found = chunk.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(chunk)
    return position


def _line_numbers(handle: Any, starts: list[int]) -> tuple[list[int], int]:
    """Line numbers (from 1) of the lines at ``starts``, and the file's line count: one pass counting newlines."""
    numbers = [1]
    handle.seek(0)
    position, newlines, last = 0, 0, b""
    for start in [*starts[1:], None]:
        while start is None or position < start:
            chunk = handle.read(_READ_BYTES if start is None else min(_READ_BYTES, start - position))
            if not chunk:
                break
            newlines += chunk.count(b"\n")
            position += len(chunk)
            last = chunk[-1:]
        if start is not None:
            numbers.append(newlines + 1)
    return numbers, newlines + (1 if last and last != b"\n" else 0)

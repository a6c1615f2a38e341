"""Reading JSONL manifests row by row, with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from voxplug.data.folder_guard import FolderGuard
from voxplug.data.interface import RowProblem
from voxplug.errors import DataError


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    """Yield ``(line number, row)`` for each non-blank line; a bad line yields a :class:`RowProblem` instead.

    Lines are read one at a time, so a manifest of any size is never held in memory. A missing file raises
    :class:`DataError`; a malformed line, a line that is not a JSON object or a line that is not UTF-8 only
    spoils that row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected a JSONL manifest)")
    with path.open("rb") as handle:
        yield from iter_jsonl_lines(handle, path.name)


def iter_jsonl_lines(
    lines: Iterable[bytes], name: str, *, start: int = 1
) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
    """:func:`iter_jsonl` over any iterable of byte lines (an open local or remote file) called ``name``, the first
    of them line ``start``."""
    for number, raw in enumerate(lines, start=start):
        where = f"{name} line {number}"
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield number, RowProblem(where, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, RowProblem(where, f"malformed JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(row, dict):
            yield number, RowProblem(where, f"expected a JSON object, got {type(row).__name__}")
            continue
        yield number, row


def resolve_inside(base_dir: Path, relative: str, *, allow_outside: bool = False) -> Path:
    """Resolve an audio path from a manifest against ``base_dir``; refuse paths that escape it.

    Absolute paths and ``..`` segments that leave ``base_dir`` raise :class:`DataError` unless
    ``allow_outside`` is set, so a manifest cannot make voxplug read (or publish) arbitrary files. For many rows
    against one folder, keep a :class:`~voxplug.data.folder_guard.FolderGuard` instead.
    """
    if allow_outside:
        candidate = Path(relative)
        return (candidate if candidate.is_absolute() else base_dir / candidate).resolve()
    return Path(FolderGuard(base_dir).resolve(relative))

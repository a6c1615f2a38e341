"""A JSONL file that survives crashes and concurrent writers: atomic appends, atomic rewrites, a file lock.

Guarantees, for processes that write through :class:`AtomicJsonl`:

* **Appends are all-or-nothing.** A row is encoded to one ``bytes`` line and written with a single
  ``os.write`` on an ``O_APPEND`` descriptor, then fsynced. A process killed (even with SIGKILL) before the write
  leaves the file as it was; a line torn by a crash of the whole machine is detected at the next write (the file
  does not end with a newline), moved to ``<name>.torn`` and cut off, so every earlier row stays readable.
* **Rewrites are all-or-nothing.** :meth:`AtomicJsonl.rewrite` writes a temporary copy beside the file and
  ``os.replace``\\ s it over the original; readers see the old file or the new one, never a mix. The temporary copy
  a killed rewrite leaves behind is deleted by the next rewrite.
* **Writers take turns.** :meth:`AtomicJsonl.locked` holds an exclusive ``fcntl.flock`` on ``.<name>.lock``, so two
  processes adding to one dataset never interleave a read-check-append sequence.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from voxplug.tempfiles import replaced_atomically

LineTransform = Callable[[int, bytes], bytes | None]
"""Called with ``(line number, raw line without its newline)``; returns the new line, or None to drop it."""


def encode_row(row: dict[str, Any]) -> bytes:
    """Encode one row as a single UTF-8 JSON line ending in a newline (non-ASCII text kept readable)."""
    return (json.dumps(row, ensure_ascii=False, separators=(", ", ": ")) + "\n").encode("utf-8")


class AtomicJsonl:
    """One JSONL file written only through atomic appends and atomic rewrites, under a process-wide lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the exclusive writer lock (blocking until other processes release it)."""
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @contextmanager
    def locked_if_free(self) -> Iterator[bool]:
        """Hold the writer lock if no other process holds it (yields True), else yield False at once."""
        try:
            handle = open(self.lock_path, "a")
        except OSError:  # a read-only folder: no writer can be at work here either way
            yield False
            return
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def append(self, row: dict[str, Any], *, sync: bool = True) -> None:
        """Append ``row`` as one line with a single write, then fsync. Call it while holding :meth:`locked`.

        ``sync=False`` leaves the fsync to a later :meth:`sync` (group commit for bulk imports): the line is just as
        safe from a killed process, and reaches the disk with the next sync.
        """
        self.repair_torn_tail()
        line = encode_row(row)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(descriptor, line)
            if written != len(line):  # only a full disk does this; cut the partial line off again
                os.ftruncate(descriptor, os.fstat(descriptor).st_size - written)
                raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes); is the disk full?")
            if sync:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def sync(self) -> None:
        """Flush appended lines to the disk (fsync)."""
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def repair_torn_tail(self) -> bool:
        """Make the file end with a newline; return True if it had to be repaired.

        A last line without its newline is either a complete row (a hand edit: the newline is added) or the
        remains of a write cut short by a machine crash (it is saved to ``<name>.torn`` and cut off).
        """
        if not self.path.exists():
            return False
        with open(self.path, "rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return False
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return False
            start = _start_of_last_line(handle, size)
            handle.seek(start)
            tail = handle.read()
            if _is_json_object(tail):
                handle.write(b"\n")
            else:
                with open(self.path.with_name(self.path.name + ".torn"), "ab") as torn:
                    torn.write(tail + b"\n")
                handle.truncate(start)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def rewrite(self, transform: LineTransform) -> int:
        """Rewrite the file line by line through ``transform``, atomically; return how many lines changed.

        Lines ``transform`` returns unchanged (including lines that are not valid JSON) are copied byte for byte,
        so a rewrite never loses what it does not understand. Call it while holding :meth:`locked`.
        """
        self.remove_leftovers()
        changed = 0
        with open(self.path, "rb") as source, replaced_atomically(self.path) as target:
            for number, raw in enumerate(source, start=1):
                line = raw.rstrip(b"\n")
                new = transform(number, line)
                changed += new != line
                if new is not None:
                    target.write(new + b"\n")
        return changed

    def leftovers(self) -> list[Path]:
        """Temporary copies that rewrites killed before their rename left beside the file (only rewrites make them,
        under :meth:`locked`: while holding it, every one found is a leftover)."""
        return sorted(self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"))

    def remove_leftovers(self) -> int:
        """Delete :meth:`leftovers`; return how many there were. Call it while holding :meth:`locked`."""
        found = self.leftovers()
        for path in found:
            path.unlink(missing_ok=True)
        return len(found)


def _start_of_last_line(handle: Any, size: int) -> int:
    """The offset just after the last newline before ``size`` (0 when the file has a single line)."""
    position = size
    block = 4096
    while position > 0:
        step = min(block, position)
        position -= step
        handle.seek(position)
        chunk = handle.read(step)
        newline = chunk.rfind(b"\n")
        if newline != -1:
            return position + newline + 1
    return 0


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw.decode("utf-8")), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False

"""Temporary folders that are removed after use, after an error, and when the process is interrupted.

:func:`temporary_folder` is a context manager around a fresh folder: it is deleted when the ``with`` block ends,
whatever ends it. Python runs that clean-up for Ctrl+C (SIGINT raises ``KeyboardInterrupt``) but not for SIGTERM,
which kills the process outright; inside the block both signals therefore raise ``KeyboardInterrupt``, so the
stack unwinds and every ``finally`` runs. The previous handlers come back when the block ends.

:func:`run_temp_dir` is the run-scoped folder, ``<run_dir>/.tmp/<pid>``: a training run works inside it and, with
``redirect_tempfile``, so does every library that asks :mod:`tempfile` for a file (its ``tempdir`` points there for
the duration). Folders that a killed process (SIGKILL, power loss) could not remove are removed by the next run
in the same run folder.

:func:`write_json` writes a file through a temporary one beside it, renamed into place, so a kill mid-write leaves
the old file or the new one.

Only the main thread can install signal handlers; elsewhere the folder is still removed on exit and on errors.
"""

from __future__ import annotations

import json
import multiprocessing.util
import os
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO

RUN_TEMP_DIR = ".tmp"
"""The run folder's temporary folder; it holds one sub-folder per process (``<pid>``)."""
INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


_pending_signal: int | None = None


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    global _pending_signal
    _pending_signal = signum
    raise KeyboardInterrupt(f"interrupted by {signal.Signals(signum).name}")


def pending_interrupt() -> KeyboardInterrupt | None:
    """The ``KeyboardInterrupt`` of a signal that arrived inside the signal block, if one did (else None).

    A signal that lands while C code calls back into Python is swallowed there, and the C code may then fail in
    its own way (soundfile: an ``AssertionError`` after a short write): callers that catch such an error ask this
    to report the interruption instead.
    """
    if _pending_signal is None:
        return None
    return KeyboardInterrupt(f"interrupted by {signal.Signals(_pending_signal).name}")


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` again for a signal whose first one was swallowed.

    Python drops an exception raised while C code calls back into Python (soundfile decodes through cffi
    callbacks), so a signal that lands there would be lost; long loops call this at safe points.
    """
    interrupt = pending_interrupt()
    if interrupt is not None:
        raise interrupt


@contextmanager
def signals_raise_keyboard_interrupt() -> Iterator[None]:
    """Inside the block SIGINT and SIGTERM raise ``KeyboardInterrupt`` (on the main thread; elsewhere: no-op).

    A signal the process ignores (``SIG_IGN``, e.g. SIGINT of a background job) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in INTERRUPT_SIGNALS}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _raise_interrupt)
    try:
        yield
    finally:
        global _pending_signal
        _pending_signal = None
        _restore_handlers(previous)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM while a clean-up runs, so a second Ctrl+C cannot leave it half done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in INTERRUPT_SIGNALS}
    for signum in INTERRUPT_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        _restore_handlers(previous)


def _restore_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def remove_folder(folder: Path) -> None:
    """Delete ``folder`` and everything in it, without being interrupted; a missing folder is fine."""
    with _signals_deferred():
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def _tempfile_redirected(folder: Path | None) -> Iterator[None]:
    """Point :mod:`tempfile`'s default folder at ``folder`` inside the block (nothing when ``folder`` is None).

    :mod:`multiprocessing` keeps the Unix sockets through which processes hand each other tensors (a data loader's
    workers) in a temporary folder of its own, which it makes on first use; a socket's path may not exceed 107
    bytes, and a run folder can be deeper than that, so that folder is settled outside ``folder`` first."""
    if folder is None:
        yield
        return
    multiprocessing.util.get_temp_dir()
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


@contextmanager
def temporary_folder(
    parent: Path | None = None, *, prefix: str = "voxplug-", redirect_tempfile: bool = False
) -> Iterator[Path]:
    """A new folder under ``parent`` (default: the system's temporary folder), removed when the block ends.

    Removed on a normal exit, on an exception, on SIGINT and on SIGTERM (see the module docstring). With
    ``redirect_tempfile`` every :mod:`tempfile` file made inside the block lands in it as well.
    """
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    with _owned_folder(folder, redirect_tempfile=redirect_tempfile):
        yield folder


@contextmanager
def run_temp_dir(run_dir: Path, *, redirect_tempfile: bool = True) -> Iterator[Path]:
    """The run-scoped temporary folder ``<run_dir>/.tmp/<pid>``, removed with ``.tmp`` itself once it is empty.

    Sub-folders left by processes that no longer exist (killed runs) are removed first.
    """
    root = Path(run_dir) / RUN_TEMP_DIR
    remove_orphans(root)
    folder = root / str(os.getpid())
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with _owned_folder(folder, redirect_tempfile=redirect_tempfile):
            yield folder
    finally:
        _remove_if_empty(root)


@contextmanager
def _owned_folder(folder: Path, *, redirect_tempfile: bool) -> Iterator[None]:
    redirect = _tempfile_redirected(folder) if redirect_tempfile else nullcontext()
    try:
        with signals_raise_keyboard_interrupt(), redirect:
            yield
    finally:
        remove_folder(folder)


def remove_orphans(root: Path) -> list[Path]:
    """Remove the ``<pid>`` sub-folders of ``root`` whose process is gone; return what was removed."""
    if not root.is_dir():
        return []
    removed = []
    for folder in root.iterdir():
        if folder.name.isdigit() and _process_exists(int(folder.name)):
            continue
        if folder.is_dir():
            remove_folder(folder)
        else:
            folder.unlink(missing_ok=True)
        removed.append(folder)
    return removed


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        return True
    return True


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (another rank still works in it) or already gone
        pass


@contextmanager
def replaced_atomically(path: Path) -> Iterator[BinaryIO]:
    """A binary handle on a new temporary file beside ``path`` (``.<name>.<random>.tmp``), which replaces ``path``
    when the block ends without error, flushed and synced first: a process killed at any point leaves the previous
    file or the new one, never half of one. On an error the temporary file is removed and ``path`` stays as it was."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "xb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented UTF-8 JSON (parents created) through :func:`replaced_atomically`; return the
    path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as handle:
        handle.write((json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8"))
    return path

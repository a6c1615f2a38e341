"""The local dataset store: a folder of 16 kHz mono WAV files named by content hash, and a ``data.jsonl``.

Layout::

    my-voice/
      dataset.json          # name, created, default language, licence, consent
      data.jsonl            # one row per clip (see ROW_KEYS)
      audio/<sha256>.wav    # 16 kHz mono 16-bit PCM, named by the hash of its samples

A row looks like ``{"id": "3f2a…", "audio_path": "audio/3f2a….wav", "text": "Hello there.", "language": "en",
"duration_s": 1.82, "sample_rate": 44100, "channels": 2, "origin": "upload", "sha256": "3f2a…",
"added": "2026-11-24T10:00:00+00:00", "source": "take1.wav"}`` (``sample_rate`` and ``channels`` describe the
original file; ``source`` is its file name, when there was one).

Safety: audio files are written atomically before their row; rows are appended with one write (see
:mod:`voxplug.data.atomic_jsonl`) under a file lock, so a killed process or two processes adding at once never
corrupt ``data.jsonl`` or leave a row without its audio. The same recording is stored once (content hashes).
Audio is written under a shared lock (``.audio-writers.lock``), so that the temporary files of killed writers
(``audio/.<sha256>.wav.<uuid>.tmp``) are deleted by the next write once no writer is at work.
The folder is also a valid ``jsonl`` data source: ``data.jsonl.path: my-voice/data.jsonl``.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from voxplug.data.atomic_jsonl import AtomicJsonl, encode_row
from voxplug.data.audio import MAX_DURATION_S, write_wav_16k
from voxplug.data.ingest import ImportItem, count_import_items, iter_import_items
from voxplug.data.interface import RowProblem
from voxplug.data.issues import Issue
from voxplug.data.manifest import iter_jsonl
from voxplug.data.parallel import default_workers, map_ordered
from voxplug.data.prepare import AudioInput, PreparedClip, check_language, prepare_clip, prepare_text
from voxplug.errors import DataError
from voxplug.tempfiles import write_json

DATA_FILE = "data.jsonl"
AUDIO_DIR = "audio"
AUDIO_WRITERS_LOCK = ".audio-writers.lock"
META_FILE = "dataset.json"
STORE_FORMAT = "voxplug-dataset"
STORE_VERSION = 1
ROW_KEYS = (
    "id",
    "audio_path",
    "text",
    "language",
    "duration_s",
    "sample_rate",
    "channels",
    "origin",
    "sha256",
    "added",
)
ORIGINS = ("upload", "recording", "import")
DURATION_BINS_S = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0)
"""Upper edges of the duration histogram's buckets; one more bucket holds anything longer."""
MAX_KEPT_PROBLEMS = 1000
"""An import keeps this many problems in memory; the rest are counted (and passed to ``on_problem``)."""

Origin = Literal["upload", "recording", "import"]
ProgressCallback = Callable[[int, "int | None"], None]
"""Called as ``progress(done, total)`` after each item; ``total`` is None when unknown."""


@dataclass
class AddResult:
    """What :meth:`DatasetStore.add` did: the row (new, or the existing one for a duplicate) and any warnings."""

    row: dict[str, Any]
    added: bool
    warnings: list[Issue] = field(default_factory=list)


@dataclass
class ImportReport:
    """What :meth:`DatasetStore.import_folder` did. ``problems`` holds the first :data:`MAX_KEPT_PROBLEMS`."""

    added: int = 0
    duplicates: int = 0
    warnings: int = 0
    problem_count: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    audio_seconds: float = 0.0
    elapsed_s: float = 0.0

    def note_problem(self, problem: RowProblem) -> None:
        """Count ``problem`` and keep it if fewer than :data:`MAX_KEPT_PROBLEMS` are kept already."""
        self.problem_count += 1
        if len(self.problems) < MAX_KEPT_PROBLEMS:
            self.problems.append(problem)


def duration_histogram(durations: Iterable[float]) -> dict[str, int]:
    """Count durations into the buckets of :data:`DURATION_BINS_S` (``"0-1s"``, ``"1-2s"``, …, ``">30s"``)."""
    labels = duration_bucket_labels()
    counts = dict.fromkeys(labels, 0)
    for duration in durations:
        counts[labels[_bucket_index(duration)]] += 1
    return counts


def duration_bucket_labels() -> list[str]:
    """The histogram's bucket names, shortest first."""
    edges = (0.0, *DURATION_BINS_S)
    labels = [f"{low:g}-{high:g}s" for low, high in itertools.pairwise(edges)]
    return [*labels, f">{DURATION_BINS_S[-1]:g}s"]


def _bucket_index(duration: float) -> int:
    return next((index for index, edge in enumerate(DURATION_BINS_S) if duration <= edge), len(DURATION_BINS_S))


def utc_now() -> str:
    """The current time as an ISO 8601 UTC timestamp with second precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class DatasetStore:
    """A local speech dataset (see the module docstring). Open one with :meth:`open` or make one with :meth:`create`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not (self.path / META_FILE).is_file():
            raise DataError(
                f"{self.path}: not a voxplug dataset (no {META_FILE}); "
                f"create one with `voxplug data create {self.path}`"
            )
        self.audio_dir = self.path / AUDIO_DIR
        self.rows_file = AtomicJsonl(self.path / DATA_FILE)
        self._index = _HashIndex(self.rows_file.path)
        self._leftovers_removed = False

    # -- creating and opening ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        language: str | None = None,
        licence: str | None = None,
        name: str | None = None,
        description: str = "",
    ) -> DatasetStore:
        """Create an empty dataset at ``path`` (a new or empty folder) and return it.

        ``language`` is the default for rows that do not name one; ``licence`` is an SPDX-style id such as
        ``cc-by-4.0`` (used in the dataset card when pushing). ``dataset.json`` also has a ``consent`` field,
        empty for now, for recording who agreed to what.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise DataError(f"{path}: exists and is not a folder (expected a new or empty folder)")
        if (path / META_FILE).exists():
            raise DataError(f"{path}: a dataset already exists here ({META_FILE} found)")
        if path.is_dir() and any(path.iterdir()):
            raise DataError(f"{path}: the folder is not empty (expected a new or empty folder for the dataset)")
        language = check_language(language, name=str(path))
        (path / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
        (path / DATA_FILE).touch()
        metadata = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "name": name or path.resolve().name,
            "description": description,
            "created": utc_now(),
            "language": language,
            "licence": licence,
            "consent": None,
        }
        write_json(path / META_FILE, metadata)
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> DatasetStore:
        """Open the existing dataset at ``path``."""
        return cls(path)

    @property
    def metadata(self) -> dict[str, Any]:
        """The contents of ``dataset.json``."""
        try:
            return json.loads((self.path / META_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.path / META_FILE}: unreadable dataset metadata ({exc})") from exc

    def set_consent(self, consent: dict[str, Any]) -> None:
        """Record in ``dataset.json`` who agreed to what, and when (the ``consent`` field; the app writes it)."""
        self._update_metadata(consent=consent)

    def set_hub_id(self, repo_id: str) -> None:
        """Record in ``dataset.json`` the Hub dataset this one was last pushed to (``hub_id``).

        Runs that train on this folder's ``data.jsonl`` name it in the model card's ``datasets:``.
        """
        self._update_metadata(hub_id=repo_id)

    def _update_metadata(self, **fields: Any) -> None:
        """Rewrite ``dataset.json`` atomically with ``fields`` changed, under the dataset's lock."""
        with self.rows_file.locked():
            write_json(self.path / META_FILE, {**self.metadata, **fields})

    @property
    def default_language(self) -> str | None:
        """The language of rows added without one (``dataset.json``'s ``language``), read once."""
        if not hasattr(self, "_default_language"):
            self._default_language: str | None = self.metadata.get("language")
        return self._default_language

    # -- reading -------------------------------------------------------------------------------------------

    def rows(self) -> Iterator[dict[str, Any]]:
        """Yield every readable row, lazily; unreadable lines are skipped (``voxplug data validate`` reports them)."""
        for _number, row in iter_jsonl(self.rows_file.path):
            if isinstance(row, dict):
                yield row

    def row(self, row_id: str) -> dict[str, Any]:
        """The row with id ``row_id``; raises :class:`DataError` if there is none."""
        for row in self.rows():
            if row.get("id") == row_id:
                return row
        raise DataError(f"{self.path}: no row with id {row_id!r} (see `voxplug data list {self.path}`)")

    def audio_file(self, row: dict[str, Any]) -> Path:
        """The absolute path of a row's audio file."""
        return self.path / row["audio_path"]

    def summary(self) -> dict[str, Any]:
        """Totals over the rows: count, seconds, hours, rows per language and origin, a duration histogram."""
        rows = 0
        seconds = 0.0
        languages: Counter[str] = Counter()
        origins: Counter[str] = Counter()
        durations: Counter[str] = Counter()
        labels = duration_bucket_labels()
        for row in self.rows():
            duration = float(row.get("duration_s") or 0.0)
            rows += 1
            seconds += duration
            languages[row.get("language") or "unknown"] += 1
            origins[row.get("origin") or "unknown"] += 1
            durations[labels[_bucket_index(duration)]] += 1
        return {
            "name": self.metadata.get("name"),
            "rows": rows,
            "seconds": round(seconds, 3),
            "hours": round(seconds / 3600, 4),
            "languages": dict(sorted(languages.items())),
            "origins": dict(sorted(origins.items())),
            "durations": {label: durations[label] for label in labels},
        }

    # -- adding --------------------------------------------------------------------------------------------

    def add(
        self,
        audio: AudioInput,
        text: str,
        *,
        language: str | None = None,
        origin: Origin = "upload",
        source_name: str | None = None,
        max_duration_s: float = MAX_DURATION_S,
    ) -> AddResult:
        """Add one clip with its transcript and return what happened.

        ``audio`` is a file path, a file's bytes or ``(samples, rate)``; it is decoded, checked (length limit,
        silence, …), converted to 16 kHz mono and written to ``audio/<sha256>.wav``. The transcript is cleaned
        and checked. A clip already in the dataset is not added twice: the result has ``added=False`` and the
        existing row. Raises :class:`~voxplug.errors.AudioError` / :class:`~voxplug.errors.DataError` naming the
        file and the reason when the clip or transcript cannot be used; nothing is written then.
        """
        name = source_name or (os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else "recording")
        language, text, text_warnings = self._check_row_fields(language, text, name)
        clip = prepare_clip(audio, name=name, max_duration_s=max_duration_s)
        source = Path(os.fspath(audio)).name if isinstance(audio, (str, os.PathLike)) else source_name
        return self._commit(clip, text, language, origin, source, text_warnings)

    def _check_row_fields(self, language: str | None, text: str, name: str) -> tuple[str | None, str, list[Issue]]:
        if problem := _check_text_type(text, name):
            raise DataError(problem)
        cleaned, warnings = prepare_text(text, name=f"{name} transcript")
        language = check_language(language, name=name) or self.default_language
        return language, cleaned, warnings

    def _commit(
        self,
        clip: PreparedClip,
        text: str,
        language: str | None,
        origin: str,
        source: str | None,
        text_warnings: list[Issue],
        *,
        sync: bool = True,
    ) -> AddResult:
        """Store a prepared clip and append its row, under the writer lock, unless the clip is a duplicate.

        The audio file is written (and fsynced) before the row that refers to it, so no row ever points at a file
        that is not there, whenever the process dies.
        """
        warnings = clip.warnings + text_warnings
        if not self._leftovers_removed:  # once per store: the temporary files killed writers left in audio/
            self._leftovers_removed = audio_leftovers(self.path, remove=True) is not None
        with self.rows_file.locked():
            existing = self._index.refresh().get(clip.sha256)
            if existing is not None:
                return AddResult(row=existing, added=False, warnings=warnings)
            relative = self._store_audio(clip)  # again under the lock: a concurrent remove may have deleted it
            row = {
                "id": clip.sha256[:16],
                "audio_path": relative,
                "text": text,
                "language": language,
                "duration_s": clip.duration_s,
                "sample_rate": clip.sample_rate,
                "channels": clip.channels,
                "origin": origin,
                "sha256": clip.sha256,
                "added": utc_now(),
            }
            if source:
                row["source"] = source
            self.rows_file.append(row, sync=sync)
        return AddResult(row=row, added=True, warnings=warnings)

    def _store_audio(self, clip: PreparedClip) -> str:
        """Write ``audio/<sha256>.wav`` unless it is there already; return its path relative to the dataset."""
        relative = f"{AUDIO_DIR}/{clip.sha256}.wav"
        if not (self.path / relative).is_file():
            self.audio_dir.mkdir(exist_ok=True)
            with writing_audio(self.path):
                write_wav_16k(self.path / relative, clip.samples)
        return relative

    # -- importing -----------------------------------------------------------------------------------------

    def import_folder(
        self,
        folder: Path,
        manifest: Path | None = None,
        *,
        language: str | None = None,
        origin: Origin = "import",
        max_duration_s: float = MAX_DURATION_S,
        progress: ProgressCallback | None = None,
        on_problem: Callable[[RowProblem], None] | None = None,
        workers: int | None = None,
    ) -> ImportReport:
        """Import every clip of ``folder`` with its transcript (a manifest, or ``.txt`` files beside the audio).

        Items stream through a few decoding threads; each good one is added like :meth:`add` (bad rows become
        problems naming the row and the reason; good rows are kept). ``language`` is used for rows that do not
        name one. ``progress(done, total)`` is called after every item.
        """
        started = time.perf_counter()
        report = ImportReport()
        total = count_import_items(folder, manifest) if progress else None
        default_language = check_language(language, name=str(folder))

        def prepare(item: ImportItem) -> tuple[PreparedClip, str, str | None, list[Issue]]:
            return self._prepare_item(item, default_language, max_duration_s)

        outcomes = map_ordered(prepare, iter_import_items(folder, manifest), workers=workers or import_workers())
        group_sync = _GroupSync(self.rows_file)
        try:
            for done, (item, outcome) in enumerate(outcomes, start=1):
                if isinstance(outcome, BaseException):
                    self._note_import_problem(report, item, outcome, on_problem)
                else:
                    clip, text, item_language, warnings = outcome
                    source = item.audio_path.name if item.audio_path else None
                    result = self._commit(clip, text, item_language, origin, source, warnings, sync=False)
                    _count_import_result(report, result, clip.duration_s)
                    group_sync.added()
                if progress:
                    progress(done, total)
        finally:
            group_sync.flush()
        report.elapsed_s = time.perf_counter() - started
        return report

    def _prepare_item(
        self, item: ImportItem, default_language: str | None, max_duration_s: float
    ) -> tuple[PreparedClip, str, str | None, list[Issue]]:
        if item.problem is not None:
            raise DataError(item.problem)
        assert item.audio_path is not None and item.text is not None
        language, text, warnings = self._check_row_fields(item.language or default_language, item.text, item.label)
        clip = prepare_clip(item.audio_path, name=item.label, max_duration_s=max_duration_s)
        self._store_audio(clip)  # here, on the worker threads, so that the files' fsyncs overlap
        return clip, text, language, warnings

    @staticmethod
    def _note_import_problem(
        report: ImportReport, item: ImportItem, error: BaseException, on_problem: Callable[[RowProblem], None] | None
    ) -> None:
        if not isinstance(error, DataError):
            raise error
        reason = str(error)
        if reason.startswith(f"{item.label}: "):
            reason = reason[len(item.label) + 2 :]
        problem = RowProblem(item.label, reason)
        report.note_problem(problem)
        if on_problem:
            on_problem(problem)

    # -- removing ------------------------------------------------------------------------------------------

    def remove(self, row_id: str) -> dict[str, Any]:
        """Remove the row ``row_id`` (rewriting ``data.jsonl`` atomically) and return it.

        Its audio file is deleted once no remaining row refers to it. Raises :class:`DataError` for an unknown id.
        """
        removed: list[dict[str, Any]] = []
        still_used: set[str] = set()

        def keep(_number: int, line: bytes) -> bytes | None:
            row = _parse_row(line)
            if row is not None and row.get("id") == row_id and not removed:
                removed.append(row)
                return None
            if row is not None and isinstance(row.get("audio_path"), str):
                still_used.add(row["audio_path"])
            return line

        with self.rows_file.locked():
            self.rows_file.rewrite(keep)
            if not removed:
                raise DataError(f"{self.path}: no row with id {row_id!r} (see `voxplug data list {self.path}`)")
            audio_path = removed[0].get("audio_path")
            if isinstance(audio_path, str) and audio_path not in still_used:
                self._delete_stored_audio(audio_path)
            self._index.reset()
        return removed[0]

    def update(self, row_id: str, *, text: str | None = None, language: str | None = None) -> dict[str, Any]:
        """Change a row's transcript and/or language (checked like new ones), atomically; return the new row.

        Raises :class:`DataError` for an unknown id, an empty transcript or a malformed language code.
        """
        changes: dict[str, Any] = {}
        if text is not None:
            changes["text"] = prepare_text(text, name=f"row {row_id} transcript")[0]
        if language is not None:
            changes["language"] = check_language(language, name=f"row {row_id}")
        updated: list[dict[str, Any]] = []

        def edit(_number: int, line: bytes) -> bytes | None:
            row = _parse_row(line)
            if row is None or row.get("id") != row_id or updated:
                return line
            updated.append({**row, **changes})
            return encode_row(updated[0]).rstrip(b"\n")

        with self.rows_file.locked():
            self.rows_file.rewrite(edit)
        if not updated:
            raise DataError(f"{self.path}: no row with id {row_id!r} (see `voxplug data list {self.path}`)")
        return updated[0]

    def _delete_stored_audio(self, relative: str) -> None:
        """Delete an audio file of this store; files outside ``audio/`` are never deleted."""
        target = (self.path / relative).resolve()
        if target.parent == self.audio_dir.resolve():
            target.unlink(missing_ok=True)


@contextmanager
def writing_audio(folder: Path) -> Iterator[None]:
    """Hold the dataset's audio-writer lock (shared) while writing a file into ``folder/audio``.

    A writer killed mid-write leaves its temporary file (``audio/.<name>.<uuid>.tmp``) behind. Such files are
    deleted only while no writer holds this lock (:func:`audio_leftovers`), so a file being written is never taken
    for one: the kernel releases a killed process's locks, never a live one's.
    """
    with open(folder / AUDIO_WRITERS_LOCK, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def audio_leftovers(folder: Path, *, remove: bool = False) -> list[str] | None:
    """The temporary files killed writers left in ``folder/audio`` (paths relative to ``folder``), deleted when
    ``remove``; None while a writer is at work (they cannot be told from files being written then) or when the
    folder cannot be locked (read-only)."""
    audio_dir = folder / AUDIO_DIR
    if not audio_dir.is_dir():
        return []
    try:
        handle = open(folder / AUDIO_WRITERS_LOCK, "a")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        try:
            with os.scandir(audio_dir) as entries:
                found = sorted(entry.name for entry in entries if _is_temporary_name(entry.name) and entry.is_file())
            if remove:
                for name in found:
                    (audio_dir / name).unlink(missing_ok=True)
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return [f"{AUDIO_DIR}/{name}" for name in found]


def _is_temporary_name(name: str) -> bool:
    """``.<name>.<uuid>.tmp``, as :func:`voxplug.data.audio.write_wav_16k` names the file it is writing."""
    return name.startswith(".") and name.endswith(".tmp")


def import_workers() -> int:
    """Threads for imports: twice the CPUs (at least 4), since part of each item is waiting for the disk."""
    return max(4, 2 * default_workers())


class _GroupSync:
    """Fsync ``data.jsonl`` once per batch of appended rows instead of once per row (bulk imports)."""

    MAX_ROWS = 200
    MAX_SECONDS = 0.5

    def __init__(self, rows_file: AtomicJsonl) -> None:
        self.rows_file = rows_file
        self.pending = 0
        self.since = time.monotonic()

    def added(self) -> None:
        """Count one appended row; sync when the batch is full or old enough."""
        self.pending += 1
        if self.pending >= self.MAX_ROWS or time.monotonic() - self.since >= self.MAX_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Sync now if any row is waiting."""
        if self.pending:
            self.rows_file.sync()
        self.pending = 0
        self.since = time.monotonic()


def _check_text_type(text: Any, name: str) -> str | None:
    if isinstance(text, bytes):
        return f"{name}: the transcript must be decoded text, got bytes (use voxplug.data.text.decode_transcript_bytes)"
    return None


def _count_import_result(report: ImportReport, result: AddResult, duration_s: float) -> None:
    report.warnings += len(result.warnings)
    if result.added:
        report.added += 1
        report.audio_seconds += duration_s
    else:
        report.duplicates += 1


def _parse_row(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return row if isinstance(row, dict) else None


class _HashIndex:
    """Where each content hash's row is in a ``data.jsonl`` (64-bit hash prefix -> byte offset), kept current cheaply.

    Each :meth:`refresh` reads only the lines appended since the last one (by any process); a rewrite (a new
    inode or a shorter file) makes it start over. Offsets rather than rows keep it small for large datasets.
    Used under the writer lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reset()

    def reset(self) -> None:
        """Forget everything; the next :meth:`refresh` rereads the whole file."""
        self._offsets: dict[int, int] = {}
        self._inode: int | None = None
        self._end = 0

    def refresh(self) -> DatasetIndexView:
        """Read the lines appended since the last call and return a view of the index."""
        try:
            status = os.stat(self.path)
        except FileNotFoundError:
            self.reset()
            return DatasetIndexView(self.path, self._offsets)
        if status.st_ino != self._inode or status.st_size < self._end:
            self.reset()
            self._inode = status.st_ino
        with open(self.path, "rb") as handle:
            handle.seek(self._end)
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                row = _parse_row(line)
                sha = row.get("sha256") if row else None
                if isinstance(sha, str) and len(sha) >= 16:
                    self._offsets.setdefault(_short_key(sha), self._end)
                self._end += len(line)
        return DatasetIndexView(self.path, self._offsets)


@dataclass
class DatasetIndexView:
    """Look-ups in a :class:`_HashIndex`: the row holding a content hash, read from disk on demand."""

    path: Path
    offsets: dict[int, int]

    def get(self, sha256: str) -> dict[str, Any] | None:
        """The row whose audio has this content hash, or None."""
        offset = self.offsets.get(_short_key(sha256))
        if offset is None:
            return None
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            row = _parse_row(handle.readline())
        return row if row is not None and row.get("sha256") == sha256 else None


def _short_key(sha256: str) -> int:
    """The first 64 bits of a hash as an int: a third of the memory of the hex string, per row."""
    return int(sha256[:16], 16)


def local_dataset_facts(manifest: Path) -> dict[str, str] | None:
    """A voxplug dataset's ``{"name", "license"}`` (the licence only when set), given its ``data.jsonl``; None for
    any other manifest or an unreadable ``dataset.json``."""
    meta = Path(manifest).parent / META_FILE
    if Path(manifest).name != DATA_FILE or not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    name = data.get("name") if isinstance(data.get("name"), str) and data.get("name") else Path(manifest).parent.name
    facts = {"name": name}
    if isinstance(data.get("licence"), str) and data["licence"]:
        facts["license"] = data["licence"]
    return facts


def pushed_hub_id(manifest: Path) -> str | None:
    """The Hub dataset a voxplug dataset was last pushed to, given its ``data.jsonl``; None for anything else.

    Reads ``hub_id`` from the ``dataset.json`` beside the manifest (``voxplug data push`` writes it). An unreadable
    ``dataset.json`` gives None: it only costs a model card its ``datasets:`` entry.
    """
    meta = Path(manifest).parent / META_FILE
    if Path(manifest).name != DATA_FILE or not meta.is_file():
        return None
    try:
        hub_id = json.loads(meta.read_text(encoding="utf-8")).get("hub_id")
    except (OSError, ValueError, AttributeError):
        return None
    return hub_id if isinstance(hub_id, str) and hub_id else None

"""Find the audio a Granary manifest row points at: in a local folder, or in a companion dataset.

Granary ships transcripts only; each row's ``audio_filepath`` names a file of the source corpus as NVIDIA's
pipeline laid it out. :class:`FolderAudio` looks it up under a local ``audio_root``. :class:`CompanionAudio` streams
a companion dataset (``espnet/yodas-granary`` for the YODAS part, or any dataset of the corpus audio) alongside the
manifest and matches rows by key: the utterance id (``utt_id``, which both Granary's YODAS rows and
``espnet/yodas-granary`` carry) or the audio file's relative path and name.

Nothing is downloaded whole: both are read as streams in the order they are published. A window of manifest rows
waits for its audio while the companion streams past; a companion row no waiting row wants is skipped. A companion
that cannot be opened stops the run once, with one message; a companion that streams on for
``max_unmatched`` rows without matching anything stops it too (the wrong config or split, or a different order),
rather than read terabytes in vain.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from voxplug_hub_datasets.errors import explain_load_error
from voxplug_hub_datasets.layouts import all_rows

from voxplug.api import DataError

MatchKey = Literal["utt_id", "path"]


def relative_parts(audio_filepath: str) -> PurePosixPath:
    """``audio_filepath`` as a relative path (a leading ``/`` or drive is dropped; ``..`` parts are refused)."""
    path = PurePosixPath(audio_filepath.replace("\\", "/"))
    relative = PurePosixPath(*[part for part in path.parts if part not in ("/", "")]) if path.is_absolute() else path
    if ".." in relative.parts or not relative.parts:
        raise DataError(f"audio_filepath {audio_filepath!r} is not a path inside the audio root")
    return relative


class FolderAudio:
    """Audio files under a local folder, found by the manifest's relative path."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise DataError(
                f"granary audio_root {root}: no such folder (expected the corpus audio, laid out as in the manifests)"
            )
        self.root = root

    def find(self, audio_filepath: str) -> Path | None:
        """The file for ``audio_filepath``, or None if it is not under the root.

        Manifests carry the paths of the machine that made them (``/data/yodas/sv/x.wav``), so the longest tail of
        the path that exists under the root wins: ``data/yodas/sv/x.wav``, then ``yodas/sv/x.wav``, ``sv/x.wav``, ...
        """
        parts = relative_parts(audio_filepath).parts
        for start in range(len(parts)):
            candidate = self.root.joinpath(*parts[start:])
            if candidate.is_file():
                return candidate
        return None

    def describe(self) -> str:
        """Where this locator looks, for messages."""
        return f"audio_root {self.root}"


class CompanionUnavailable(DataError):
    """The companion dataset cannot be read at all: the run stops once, instead of failing every row."""


@dataclass
class CompanionClip:
    """A companion row's audio (the bytes or a local file) and what it says about itself."""

    audio_bytes: bytes | None
    audio_path: Path | None
    duration_s: float | None
    is_segment: bool
    """True when the audio is the utterance itself (``utt_id`` match), False when it is the whole source file."""


@dataclass
class _Waiting:
    """A manifest row waiting for its companion audio."""

    item: Any
    keys: list[str]


@dataclass
class CompanionAudio:
    """A companion dataset streamed alongside the manifest and matched to its rows (see the module docstring)."""

    repo: str
    config: str | None
    split: str
    audio_column: str = "audio"
    key: MatchKey | None = None
    path_column: str | None = None
    window: int = 2048
    max_unmatched: int = 100_000
    _stream: Iterator[dict[str, Any]] | None = field(default=None, init=False, repr=False)
    _exhausted: bool = field(default=False, init=False, repr=False)

    def describe(self) -> str:
        """Which dataset, config and split, for messages."""
        config = f" config {self.config!r}" if self.config else ""
        return f"audio_dataset {self.repo!r}{config} split {self.split!r}"

    def manifest_keys(self, row: dict[str, Any]) -> list[str]:
        """The keys a manifest row is matched by: its ``utt_id`` (or file stem), or its relative path and name."""
        audio_filepath = row.get("audio_filepath")
        path = str(audio_filepath) if isinstance(audio_filepath, str) and audio_filepath else None
        if self._key() == "utt_id":
            keys = [str(row["utt_id"])] if row.get("utt_id") else []
            return keys + ([PurePosixPath(path).stem] if path else [])
        if path is None:
            return []
        return [str(relative_parts(path)), PurePosixPath(path).name]

    def join(self, items: Iterator[tuple[Any, list[str]]]) -> Iterator[tuple[Any, CompanionClip | None]]:
        """Pair each ``(item, keys)`` with its companion clip, or None when the companion has none for it.

        Items are yielded as their audio is found (within a window, out of the manifest's order), and those still
        waiting when the companion ends are yielded with None.
        """
        waiting: dict[str, _Waiting] = {}
        pending: list[_Waiting] = []
        for item, keys in items:
            if not keys:
                yield item, None
                continue
            entry = _Waiting(item, keys)
            pending.append(entry)
            for key in keys:
                waiting.setdefault(key, entry)
            if len(pending) >= self.window:
                yield from self._match(waiting, pending, until=len(pending) // 2)
        yield from self._match(waiting, pending, until=0)

    def _match(
        self, waiting: dict[str, _Waiting], pending: list[_Waiting], *, until: int
    ) -> Iterator[tuple[Any, CompanionClip | None]]:
        """Stream the companion until at most ``until`` rows wait; when it ends, the waiting rows have no audio."""
        unmatched = 0
        while len(pending) > until:
            if self._exhausted:
                for entry in pending:
                    yield entry.item, None
                pending.clear()
                waiting.clear()
                return
            row = next(self._rows(), None)
            if row is None:
                self._exhausted = True
                continue
            entry = next((waiting[key] for key in self._companion_keys(row) if key in waiting), None)
            if entry is None:
                unmatched += 1
                if unmatched >= self.max_unmatched:
                    raise CompanionUnavailable(
                        f"granary {self.describe()}: {unmatched} rows streamed without matching any waiting manifest "
                        f"row (by {self._key()}); is it the companion of this manifest (config, split), published "
                        "in the same order?"
                    )
                continue
            unmatched = 0
            for key in entry.keys:
                if waiting.get(key) is entry:
                    del waiting[key]
            pending.remove(entry)
            yield entry.item, self._clip(row)

    # -- the companion stream ------------------------------------------------------------------------------

    def _rows(self) -> Iterator[dict[str, Any]]:
        if self._stream is None:
            self._stream = self._open()
        return self._stream

    def _open(self) -> Iterator[dict[str, Any]]:
        import datasets

        try:
            dataset = datasets.load_dataset(self.repo, self.config, split=self.split, streaming=True)
            columns = dataset.column_names
            if columns is not None and self.audio_column not in columns:
                raise DataError(f"no column {self.audio_column!r} (its columns: {', '.join(columns)})")
            if self.key is None:
                self.key = "utt_id" if columns is not None and "utt_id" in columns else "path"
            dataset = dataset.cast_column(self.audio_column, datasets.Audio(decode=False))
            return self._guarded(all_rows(dataset))
        except DataError as exc:
            raise CompanionUnavailable(f"granary {self.describe()}: {exc}") from exc
        except Exception as exc:  # datasets raises many types; all mean the companion cannot be streamed
            raise CompanionUnavailable(
                f"granary {self.describe()}: cannot be streamed: {explain_load_error(exc)}"
            ) from exc

    def _guarded(self, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The companion's rows; a failure while streaming stops the run once, naming the companion."""
        try:
            yield from rows
        except Exception as exc:
            raise CompanionUnavailable(
                f"granary {self.describe()}: streaming failed: {explain_load_error(exc)}"
            ) from exc

    def _key(self) -> MatchKey:
        if self.key is None:
            self._rows()  # opening the stream decides the key from its columns
        return self.key or "path"

    def _companion_keys(self, row: dict[str, Any]) -> list[str]:
        if self._key() == "utt_id":
            return [str(row["utt_id"])] if row.get("utt_id") else []
        audio = row.get(self.audio_column)
        path = row.get(self.path_column) if self.path_column else (audio or {}).get("path")
        if not path:
            return []
        try:
            return [str(relative_parts(path)), PurePosixPath(path).name]
        except DataError:
            return [PurePosixPath(path).name]

    def _clip(self, row: dict[str, Any]) -> CompanionClip:
        audio = row.get(self.audio_column) or {}
        data = audio.get("bytes") if isinstance(audio, dict) else None
        local = audio.get("path") if isinstance(audio, dict) else None
        duration = row.get("duration")
        return CompanionClip(
            audio_bytes=data or None,
            audio_path=Path(local) if not data and local and Path(local).is_file() else None,
            duration_s=float(duration) if isinstance(duration, (int, float)) and duration > 0 else None,
            is_segment=self._key() == "utt_id",
        )

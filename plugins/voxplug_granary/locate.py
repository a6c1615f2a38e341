"""Find the audio a Granary manifest row points at: in a local folder, or in a companion Hub dataset.

Granary ships transcripts only; each row's ``audio_filepath`` names a file of the source corpus as NVIDIA's
pipeline laid it out. :class:`FolderAudio` looks it up under a local ``audio_root``; :class:`CompanionAudio` looks it
up in a Hub (or local) dataset whose audio column's paths (or a path column) hold the same relative paths or file
names. Both return None for audio they cannot find, so the source can count and report the row.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from voxplug.data.lazy_example import DatasetAudio
from voxplug.errors import DataError


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


class CompanionAudio:
    """Audio rows of a companion dataset, indexed by their relative path and file name (read on demand)."""

    def __init__(
        self, repo: str, *, config: str | None, split: str, audio_column: str, path_column: str | None
    ) -> None:
        self.repo, self.config, self.split = repo, config, split
        self.audio_column, self.path_column = audio_column, path_column
        self._dataset: Any = None
        self._index: dict[str, int] | None = None

    def find(self, audio_filepath: str) -> DatasetAudio | None:
        """A loader of the audio for ``audio_filepath``, or None if the companion has no such file."""
        index = self._lookup().get(str(relative_parts(audio_filepath)))
        if index is None:
            index = self._lookup().get(PurePosixPath(audio_filepath).name)
        return None if index is None else DatasetAudio(self._dataset, index, self.audio_column)

    def describe(self) -> str:
        """Where this locator looks, for messages."""
        return f"audio_dataset {self.repo!r}"

    def _lookup(self) -> dict[str, int]:
        if self._index is None:
            self._dataset = self._load()
            self._index = {}
            for row, path in enumerate(self._paths()):
                for key in _index_keys(path):
                    self._index.setdefault(key, row)
        return self._index

    def _load(self) -> Any:
        import datasets

        try:
            dataset = datasets.load_dataset(self.repo, self.config, split=self.split)
            return dataset.cast_column(self.audio_column, datasets.Audio(decode=False))
        except Exception as exc:  # any failure here means the companion cannot serve audio
            raise DataError(
                f"granary audio_dataset {self.repo!r} split {self.split!r}: cannot be loaded: {exc}"
            ) from exc

    def _paths(self) -> list[str | None]:
        """Each row's path, read from the Arrow table without touching the audio bytes."""
        import pyarrow.compute as pc

        table = self._dataset.data
        if self.path_column:
            return table.column(self.path_column).to_pylist()
        return pc.struct_field(table.column(self.audio_column), "path").to_pylist()


def _index_keys(path: str | None) -> list[str]:
    if not path:
        return []
    try:
        return [str(relative_parts(path)), PurePosixPath(path).name]
    except DataError:
        return [PurePosixPath(path).name]

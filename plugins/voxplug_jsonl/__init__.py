"""The ``jsonl`` data source: rows such as ``{"audio_path": "clips/a.wav", "text": "...", "language": "en"}``.

Audio paths are relative to the JSONL file's folder (``audio`` is accepted as an alias of ``audio_path``).
A row's word timings (``"words": [{"word", "start", "end"}, ...]``, in seconds) are kept for aligners.
A row that cannot be used is reported with its line and reason, never dropped silently. This module is a
plugin exactly like a third-party one: it registers through the ``voxplug`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from voxplug import hookimpl
from voxplug.data.folder_guard import FolderGuard
from voxplug.data.interface import DataSource, Example, RowProblem
from voxplug.data.manifest import iter_jsonl, resolve_inside
from voxplug.errors import DataError
from voxplug.extension import PluginOptions


class JsonlOptions(PluginOptions):
    """Options of the ``jsonl`` source."""

    path: Path = Field(description="the JSONL manifest; relative to the config file's folder")
    allow_outside: bool = Field(False, description="allow audio paths outside the manifest's folder")


class JsonlSource(DataSource):
    """Examples from a JSONL manifest (a voxplug dataset's ``data.jsonl`` or any file of that shape)."""

    name = "jsonl"
    description = "a JSONL manifest of {audio_path, text, language} rows"
    Options = JsonlOptions
    options: JsonlOptions

    @property
    def manifest(self) -> Path:
        """The manifest's absolute path."""
        path = self.options.path
        return path if path.is_absolute() else self.base_dir / path

    def dataset_id(self) -> str | None:
        """For a voxplug dataset's ``data.jsonl``: the Hub dataset it was pushed to (``voxplug data push``)."""
        from voxplug.data.store import pushed_hub_id

        return pushed_hub_id(self.manifest)

    def local_dataset(self) -> dict[str, str] | None:
        """A voxplug dataset's name and licence (from its ``dataset.json``); for any other manifest, its file name."""
        from voxplug.data.store import local_dataset_facts

        return local_dataset_facts(self.manifest) or {"name": self.manifest.name}

    def examples(self, split: str = "train") -> Iterator[Example]:
        """Yield every usable row of the manifest (the split is chosen later by voxplug)."""
        guard = None if self.options.allow_outside else FolderGuard(self.manifest.parent, label="the manifest's folder")
        for number, row in iter_jsonl(self.manifest):
            if isinstance(row, RowProblem):
                self.problems.append(row)
                continue
            try:
                yield self._example(row, number, guard)
            except DataError as exc:
                self.problems.append(RowProblem(f"{self.manifest.name} line {number}", str(exc)))

    def _example(self, row: dict, number: int, guard: FolderGuard | None) -> Example:
        from voxplug.data.text import clean_transcript

        audio = row.get("audio_path", row.get("audio"))
        if not isinstance(audio, str) or not audio:
            raise DataError("no audio_path (expected a path relative to the manifest's folder)")
        text = row.get("text")
        if not isinstance(text, str):
            raise DataError(f"text must be a string, got {type(text).__name__}")
        text = clean_transcript(text)
        if not text:
            raise DataError("empty transcript (expected the words spoken in the clip)")
        path = Path(guard.resolve(audio)) if guard else resolve_inside(self.manifest.parent, audio, allow_outside=True)
        if not path.is_file():
            raise DataError(f"audio file {audio} not found")
        language = row.get("language") or None
        return Example(
            id=str(row.get("id") or f"{self.manifest.stem}-{number}"),
            text=text,
            language=language,
            audio_path=path,
            duration_s=row.get("duration_s"),
            origin=f"{self.manifest.name} line {number}",
            meta={key: row[key] for key in ("sha256", "origin", "sample_rate", "words") if key in row},
        )


@hookimpl
def register_data_sources(register) -> None:
    """Register the ``jsonl`` source."""
    register(JsonlSource)

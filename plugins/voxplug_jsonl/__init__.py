"""The ``jsonl`` data source: rows such as ``{"audio_path": "clips/a.wav", "text": "...", "language": "en"}``.

Audio paths are relative to the JSONL file's folder (``audio`` is accepted as an alias of ``audio_path``).
A row's word timings (``"words": [{"word", "start", "end"}, ...]``, in seconds) are kept for aligners.
A row that cannot be used is reported with its line and reason, never dropped silently. This module is a
plugin exactly like a third-party one: it registers through the ``voxplug`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from voxplug import hookimpl
from voxplug.api import (
    STREAM_ABOVE_BYTES,
    DataError,
    DataSource,
    Example,
    FolderGuard,
    PluginOptions,
    RowProblem,
    StreamPieces,
    clean_transcript,
    iter_block,
    iter_jsonl,
    plan_blocks,
    resolve_inside,
)


class JsonlOptions(PluginOptions):
    """Options of the ``jsonl`` source."""

    path: Path = Field(description="the JSONL manifest; relative to the config file's folder")
    allow_outside: bool = Field(False, description="allow audio paths outside the manifest's folder")
    stream_above_mb: float = Field(
        STREAM_ABOVE_BYTES / 1e6,
        ge=0,
        description="a manifest larger than this streams (data.streaming: null): its rows are never listed",
    )


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
        from voxplug.api import pushed_hub_id

        return pushed_hub_id(self.manifest)

    def local_dataset(self) -> dict[str, str] | None:
        """A voxplug dataset's name and licence (from its ``dataset.json``); for any other manifest, its file name."""
        from voxplug.api import local_dataset_facts

        return local_dataset_facts(self.manifest) or {"name": self.manifest.name}

    @property
    def streaming(self) -> bool:
        """True for a manifest larger than ``stream_above_mb``: training then streams it (docs/data.md)."""
        try:
            return self.manifest.stat().st_size > self.options.stream_above_mb * 1_000_000
        except OSError:
            return False

    def examples(self, split: str = "train") -> Iterator[Example]:
        """Yield every usable row of the manifest (the split is chosen later by voxplug)."""
        yield from self._examples(iter_jsonl(self.manifest))

    def stream_pieces(self, split: str = "train") -> StreamPieces:
        """The manifest as blocks of whole lines (:mod:`voxplug.data.manifest_blocks`), found without parsing it."""
        if not self.manifest.is_file():
            raise DataError(f"{self.manifest}: no such file (expected a JSONL manifest)")
        plan = plan_blocks(self.manifest)
        return StreamPieces(plan.blocks, rows=plan.lines)

    def piece_examples(self, piece: Any, split: str = "train") -> Iterator[Example]:
        """The usable rows of one block of the manifest."""
        yield from self._examples(iter_block(self.manifest, piece))

    def _examples(self, rows: Iterator[tuple[int, dict[str, Any] | RowProblem]]) -> Iterator[Example]:
        guard = None if self.options.allow_outside else FolderGuard(self.manifest.parent, label="the manifest's folder")
        for number, row in rows:
            if isinstance(row, RowProblem):
                self.problems.append(row)
                continue
            try:
                yield self._example(row, number, guard)
            except DataError as exc:
                self.problems.append(RowProblem(f"{self.manifest.name} line {number}", str(exc)))

    def _example(self, row: dict, number: int, guard: FolderGuard | None) -> Example:
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

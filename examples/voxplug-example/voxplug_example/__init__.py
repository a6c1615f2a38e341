"""voxplug-example: a TSV data source, an archive publisher, a publish notifier and a model-card section."""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from voxplug import hookimpl
from voxplug.api import DataSource, Example, ModelCard, PluginOptions, Publisher, PublishResult, RowProblem


class TsvOptions(PluginOptions):
    """Options of the ``tsv`` source."""

    folder: Path = Field(description="folder holding the audio files and transcripts.tsv")
    language: str | None = Field(None, description="language of every row (None: automatic)")


class TsvSource(DataSource):
    """Rows from ``transcripts.tsv`` (``file<TAB>text``, an optional header row) beside the audio files."""

    name = "tsv"
    description = "a folder of audio files with transcripts.tsv (file<TAB>text)"
    Options = TsvOptions
    options: TsvOptions

    def examples(self, split: str = "train") -> Iterator[Example]:
        """Yield one example per TSV line whose audio file exists; report the others."""
        folder = self.options.folder if self.options.folder.is_absolute() else self.base_dir / self.options.folder
        with (folder / "transcripts.tsv").open(encoding="utf-8", newline="") as handle:
            for number, fields in enumerate(csv.reader(handle, delimiter="\t"), start=1):
                where = f"transcripts.tsv line {number}"
                if number == 1 and [f.strip().lower() for f in fields] == ["file", "text"]:
                    continue  # a header row
                if len(fields) != 2 or not fields[1].strip():
                    self.problems.append(RowProblem(where, "expected two columns: file<TAB>text"))
                    continue
                audio = folder / fields[0]
                if not audio.is_file():
                    self.problems.append(RowProblem(where, f"audio file {fields[0]} not found"))
                    continue
                yield Example(
                    id=audio.stem,
                    text=fields[1].strip(),
                    language=self.options.language,
                    audio_path=audio,
                    origin=where,
                )


class ArchiveOptions(PluginOptions):
    """Options of the ``archive`` publisher."""

    folder: Path = Field(Path("archives"), description="where the .zip files go")


class ArchivePublisher(Publisher):
    """Publishes a model folder as one zip file."""

    name = "archive"
    description = "the model folder as a .zip file"
    Options = ArchiveOptions
    options: ArchiveOptions

    def publish(self, model_dir: Path, *, destination: str | None = None) -> PublishResult:
        """Zip every file of ``model_dir`` into ``<folder>/<destination or folder name>.zip``."""
        self.options.folder.mkdir(parents=True, exist_ok=True)
        target = self.options.folder / f"{(destination or model_dir.name).replace('/', '--')}.zip"
        files = sorted(p for p in model_dir.rglob("*") if p.is_file())
        partial = target.with_suffix(".zip.partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, path.relative_to(model_dir).as_posix())
        partial.replace(target)
        return PublishResult(
            target=self.name,
            destination=str(target),
            url=target.resolve().as_uri(),
            files=[p.relative_to(model_dir).as_posix() for p in files],
        )


@hookimpl
def register_data_sources(register) -> None:
    """Hand voxplug the ``tsv`` source."""
    register(TsvSource)


@hookimpl
def register_publishers(register) -> None:
    """Hand voxplug the ``archive`` publisher."""
    register(ArchivePublisher)


@hookimpl
def after_publish(result: PublishResult) -> None:
    """Append a line about every publish to the file named by ``VOXPLUG_EXAMPLE_LOG`` (if set)."""
    log = os.environ.get("VOXPLUG_EXAMPLE_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"published {result.kind} with {result.target} to {result.destination}\n")


@hookimpl
def model_card_sections(card: ModelCard) -> str:
    """Add a short section to every model card."""
    return "## Built with voxplug-example\n\nThis card was extended by the voxplug-example plugin."

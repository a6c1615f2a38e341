"""The ``hub`` data source: any audio dataset ``datasets.load_dataset`` can open, from the Hub or from disk.

Configure it under ``data.hub``::

    data:
      source: hub
      hub:
        repo: mozilla-foundation/common_voice_17_0   # or "parquet" / "audiofolder" with data_files / data_dir
        config: sv-SE
        train_split: train
        eval_split: validation        # optional: the dataset's own eval split
        text_column: sentence
        language: sv                  # or language_column: locale
        streaming: true               # read rows lazily instead of downloading the split first

Audio is never decoded by ``datasets`` (no torchcodec or FFmpeg needed): the audio column is cast to
``Audio(decode=False)`` and each example keeps the file's bytes or its local path; voxplug decodes it with
soundfile and resamples with soxr when a batch needs it. A row without usable audio or text is reported as a
:class:`~voxplug.data.interface.RowProblem` naming the split and the row, never dropped silently. A Hub token, when
needed, comes from ``HF_TOKEN`` or ``hf auth login``, never from the config.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from voxplug import hookimpl
from voxplug.data.interface import DataSource, Example, RowProblem
from voxplug.data.lazy_example import DatasetAudio, LazyExample
from voxplug.data.text import clean_transcript
from voxplug.errors import DataError
from voxplug.extension import PluginOptions

PACKAGED_BUILDERS = ("parquet", "arrow", "csv", "json", "audiofolder", "webdataset")
"""Builder names whose ``data_files`` / ``data_dir`` are local paths (resolved against the config's folder)."""


class HubDatasetOptions(PluginOptions):
    """Options of the ``hub`` source."""

    repo: str = Field(description="Hub dataset id (user/name), a local dataset folder, or a builder such as parquet")
    config: str | None = Field(None, description="dataset configuration (subset) name")
    revision: str | None = Field(None, description="branch, tag or commit of the Hub dataset")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="data files (local paths, relative to the config's folder, for builders like parquet)"
    )
    data_dir: str | None = Field(None, description="data folder inside the repo, or a local folder for a builder")
    train_split: str = Field("train", description="split to train on")
    eval_split: str | None = Field(None, description="the dataset's own eval split; None holds rows out of training")
    streaming: bool = Field(False, description="read rows lazily instead of downloading the split first")
    audio_column: str = "audio"
    text_column: str = "text"
    language_column: str | None = Field(None, description="column holding each row's language code")
    language: str | None = Field(None, description="language of every row (when there is no language column)")
    id_column: str | None = Field(None, description="column holding a row id (default: split and row number)")
    max_rows: int | None = Field(None, ge=1, description="read at most this many rows per split")


class HubDatasetSource(DataSource):
    """Examples from a Hub (or local) audio dataset through ``datasets.load_dataset``."""

    name = "hub"
    description = "any Hub audio dataset via datasets.load_dataset (column mapping, splits, streaming)"
    Options = HubDatasetOptions
    options: HubDatasetOptions

    @property
    def has_eval_split(self) -> bool:
        """True when ``eval_split`` names the dataset's own evaluation split."""
        return self.options.eval_split is not None

    @property
    def streaming(self) -> bool:
        """Whether rows are streamed (voxplug then checks audio lazily, as batches decode it)."""
        return self.options.streaming

    def dataset_id(self) -> str | None:
        """The Hub id, for model-card metadata (None for local data)."""
        repo = self.options.repo
        if repo in PACKAGED_BUILDERS or (self.base_dir / repo).exists() or "/" not in repo:
            return None
        return repo

    def examples(self, split: str = "train") -> Iterator[Example]:
        """Yield the examples of the train split, or of ``eval_split`` for ``split="eval"``."""
        split_name = (
            self.options.eval_split if split == "eval" and self.options.eval_split else self.options.train_split
        )
        dataset = self._load_split(split_name)
        for index, row in enumerate(self._rows(dataset)):
            if self.options.max_rows is not None and index >= self.options.max_rows:
                break
            where = f"{self.options.repo} [{split_name}] row {index}"
            try:
                yield self._example(dataset, row, index, split_name, where)
            except DataError as exc:
                self.problems.append(RowProblem(where, str(exc)))

    def _rows(self, dataset: Any) -> Any:
        """The rows to read: all columns when streaming; without the audio bytes from a local Arrow dataset."""
        if self.options.streaming:
            return dataset
        return dataset.remove_columns([self.options.audio_column])

    # -- loading -------------------------------------------------------------------------------------------

    def _load_split(self, split_name: str) -> Any:
        """Open one split with ``datasets.load_dataset``, its audio column cast to ``Audio(decode=False)``."""
        import datasets

        options = self.options
        try:
            dataset = datasets.load_dataset(
                self._repo_path(),
                options.config,
                split=split_name,
                streaming=options.streaming,
                revision=options.revision,
                data_files=self._local_paths(options.data_files),
                data_dir=self._local_paths(options.data_dir),
            )
        except Exception as exc:  # datasets raises many types; all mean "this dataset/split cannot be opened"
            raise DataError(f"hub dataset {self._describe(split_name)}: cannot be loaded: {exc}") from exc
        self._require_columns(dataset, split_name)
        try:
            return dataset.cast_column(options.audio_column, datasets.Audio(decode=False))
        except Exception as exc:
            raise DataError(
                f"hub dataset {self._describe(split_name)}: column {options.audio_column!r} is not audio "
                f"(expected an Audio feature or file paths): {exc}"
            ) from exc

    def _repo_path(self) -> str:
        local = self.base_dir / self.options.repo
        return str(local) if self.options.repo not in PACKAGED_BUILDERS and local.exists() else self.options.repo

    def _local_paths(self, value: Any) -> Any:
        """Resolve relative data paths against the config's folder when they name local files."""
        if value is None or self.options.repo not in PACKAGED_BUILDERS:
            return value
        if isinstance(value, str):
            return value if Path(value).is_absolute() else str(self.base_dir / value)
        if isinstance(value, list):
            return [self._local_paths(item) for item in value]
        return {key: self._local_paths(item) for key, item in value.items()}

    def _require_columns(self, dataset: Any, split_name: str) -> None:
        columns = dataset.column_names
        if columns is None:  # some streamed datasets only know their columns after the first row
            return
        wanted = [self.options.audio_column, self.options.text_column]
        wanted += [self.options.language_column] if self.options.language_column else []
        missing = [column for column in wanted if column not in columns]
        if missing:
            raise DataError(
                f"hub dataset {self._describe(split_name)}: no column {', '.join(map(repr, missing))} "
                f"(its columns: {', '.join(columns)}; set audio_column / text_column / language_column)"
            )

    def _describe(self, split_name: str) -> str:
        config = f" config {self.options.config!r}" if self.options.config else ""
        return f"{self.options.repo!r}{config} split {split_name!r}"

    # -- rows ----------------------------------------------------------------------------------------------

    def _example(self, dataset: Any, row: dict[str, Any], index: int, split_name: str, where: str) -> Example:
        """One example; a streamed row carries its audio, a local one is fetched from the Arrow file when needed."""
        options = self.options
        text = row.get(options.text_column)
        if not isinstance(text, str):
            raise DataError(f"{options.text_column} must be text, got {type(text).__name__}")
        language = row.get(options.language_column) if options.language_column else options.language
        row_id = row.get(options.id_column) if options.id_column else None
        example = LazyExample(
            id=str(row_id if row_id is not None else f"{split_name}-{index}"),
            text=clean_transcript(text),
            language=language or None,
            origin=where,
        )
        if options.streaming:
            example.audio_bytes, example.audio_path = _audio_of(row.get(options.audio_column), options.audio_column)
        else:
            _require_audio(dataset, index, options.audio_column)
            example.fetch_audio = DatasetAudio(dataset, index, options.audio_column)
        return example


def _audio_of(value: Any, column: str) -> tuple[bytes | None, Path | None]:
    """The bytes or the readable local path of an ``Audio(decode=False)`` value."""
    if not isinstance(value, dict):
        raise DataError(f"no audio in column {column!r} (got {type(value).__name__})")
    if value.get("bytes"):
        return value["bytes"], None
    return None, _readable_path(value.get("path"))


def _require_audio(dataset: Any, index: int, column: str) -> None:
    """Check that row ``index`` of an Arrow dataset has audio, without reading its bytes."""
    import pyarrow.compute as pc

    cell = dataset.data.fast_slice(index, 1).column(column)
    if pc.struct_field(cell, "bytes").null_count == 0:
        return
    _readable_path(pc.struct_field(cell, "path").to_pylist()[0])


def _readable_path(path: str | None) -> Path:
    if path and Path(path).is_file():
        return Path(path)
    raise DataError(f"the audio is not available: no bytes and no readable file (path {path!r})")


@hookimpl
def register_data_sources(register) -> None:
    """Register the ``hub`` source."""
    register(HubDatasetSource)

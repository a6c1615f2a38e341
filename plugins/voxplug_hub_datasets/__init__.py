"""The ``hub`` data source: any audio dataset ``datasets.load_dataset`` can open, from the Hub or from disk.

Configure it under ``data.hub``::

    data:
      source: hub
      hub:
        repo: mozilla-foundation/common_voice_17_0   # or "parquet" / "audiofolder" with data_files / data_dir
        config: sv-SE
        train_split: train
        eval_split: validation        # optional: the dataset's own eval split
        text_column: sentence         # optional: text, sentence, transcription, normalized_text, ... are found
        language: sv                  # or language_column: locale (ClassLabel columns give their label)
        streaming: true               # read rows lazily instead of downloading the split first

Audio is never decoded by ``datasets`` and never needs torchcodec or FFmpeg, in any layout (Parquet and Arrow,
``audiofolder``, WebDataset; see :mod:`voxplug_hub_datasets.layouts`): each example keeps the file's bytes or its
local path, and voxplug decodes it with soundfile and resamples with soxr when a batch needs it. A row without
usable audio or text is reported as a :class:`~voxplug.data.interface.RowProblem` naming the split and the row,
never dropped silently. A Hub token, when needed, comes from ``HF_TOKEN`` or ``hf auth login``, never from the
config.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from voxplug import hookimpl
from voxplug.api import (
    DataError,
    DataSource,
    Example,
    LazyExample,
    PluginOptions,
    RowProblem,
    StreamPieces,
    clean_transcript,
)
from voxplug_hub_datasets.columns import TEXT_COLUMNS, label_reader, pick_text_column
from voxplug_hub_datasets.layouts import DatasetRequest, OpenedSplit, describe, open_split

PACKAGED_BUILDERS = ("parquet", "arrow", "csv", "json", "audiofolder", "webdataset")
"""Builder names whose ``data_files`` / ``data_dir`` are local paths (resolved against the config's folder)."""


class HubDatasetOptions(PluginOptions):
    """Options of the ``hub`` source."""

    repo: str = Field(
        description="Hub dataset id (user/name), a local dataset folder, or a builder: parquet, audiofolder, webdataset"
    )
    config: str | None = Field(None, description="dataset configuration (subset) name")
    revision: str | None = Field(None, description="branch, tag or commit of the Hub dataset")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="data files (local paths, relative to the config's folder, for builders like parquet)"
    )
    data_dir: str | None = Field(None, description="data folder inside the repo, or a local folder for a builder")
    train_split: str = Field("train", description="split to train on")
    eval_split: str | None = Field(None, description="the dataset's own eval split; None holds rows out of training")
    streaming: bool = Field(False, description="read rows lazily instead of downloading the split first")
    audio_column: str | None = Field(
        None, description="column (or WebDataset key) holding the audio; default: audio, or the first audio column"
    )
    text_column: str | None = Field(
        None, description=f"column holding the transcript; default: the first present of {', '.join(TEXT_COLUMNS)}"
    )
    language_column: str | None = Field(
        None, description="column holding each row's language (a ClassLabel column gives its label)"
    )
    language: str | None = Field(None, description="language of every row (when there is no language column)")
    id_column: str | None = Field(None, description="column holding a row id (default: split and row number)")
    max_rows: int | None = Field(None, ge=1, description="read at most this many rows per split")


class HubDatasetSource(DataSource):
    """Examples from a Hub (or local) audio dataset through ``datasets``, in any of its layouts."""

    name = "hub"
    description = "any Hub audio dataset via datasets (Parquet, audiofolder, WebDataset; column mapping, streaming)"
    Options = HubDatasetOptions
    options: HubDatasetOptions

    @property
    def has_eval_split(self) -> bool:
        """True when ``eval_split`` names the dataset's own evaluation split."""
        return self.options.eval_split is not None

    @property
    def streaming(self) -> bool:
        """Whether rows are streamed (voxplug then checks clips by their headers instead of decoding them)."""
        return self.options.streaming

    def dataset_id(self) -> str | None:
        """The Hub id, for model-card metadata (None for local data)."""
        repo = self.options.repo
        if repo in PACKAGED_BUILDERS or (self.base_dir / repo).exists() or "/" not in repo:
            return None
        return repo

    def examples(self, split: str = "train") -> Iterator[Example]:
        """Yield the examples of the train split, or of ``eval_split`` for ``split="eval"``."""
        yield from self._examples(self._split_name(split))

    def stream_pieces(self, split: str = "train") -> StreamPieces | None:
        """A streamed split's data files, when it has several (and no ``max_rows`` asks for its first rows)."""
        if not self.options.streaming or self.options.max_rows is not None:
            return None
        opened = open_split(self._request(), self._split_name(split), self.options.audio_column)
        if opened.shards is None or opened.shards < 2:
            return None
        return StreamPieces(tuple((index, opened.shards) for index in range(opened.shards)), rows=opened.num_rows)

    def piece_examples(self, piece: Any, split: str = "train") -> Iterator[Example]:
        """The examples of one data file of a streamed split (``piece`` is ``(index, files)``)."""
        yield from self._examples(self._split_name(split), shard=piece)

    def _split_name(self, split: str) -> str:
        return self.options.eval_split if split == "eval" and self.options.eval_split else self.options.train_split

    def _examples(self, split_name: str, shard: tuple[int, int] | None = None) -> Iterator[Example]:
        request = self._request()
        opened = open_split(request, split_name, self.options.audio_column, shard=shard)
        rows = opened.rows
        if self.options.max_rows is not None:
            rows = itertools.islice(rows, self.options.max_rows)
        columns = opened.columns
        if columns is None:  # a stream that learns its columns from its first row
            first = next(rows, None)
            if first is None:
                return
            columns = list(first[0])
            rows = itertools.chain([first], rows)
        reader = _RowReader(self._columns(opened, columns, describe(request, split_name)), opened)
        part = f" file {shard[0] + 1} of {shard[1]}" if shard is not None else ""
        id_prefix = split_name if shard is None else f"{split_name}-{shard[0]}"
        for index, (row, audio_ref) in enumerate(rows):
            where = f"{self.options.repo} [{split_name}]{part} row {index}"
            try:
                yield reader.example(row, audio_ref, index, id_prefix, where)
            except DataError as exc:
                self.problems.append(RowProblem(where, str(exc), code=getattr(exc, "code", "rejected")))

    # -- opening -------------------------------------------------------------------------------------------

    def _request(self) -> DatasetRequest:
        options = self.options
        return DatasetRequest(
            path=self._repo_path(),
            config=options.config,
            revision=options.revision,
            data_files=self._local_paths(options.data_files),
            data_dir=self._local_paths(options.data_dir),
            streaming=options.streaming,
            name=options.repo,
        )

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

    def _columns(self, opened: OpenedSplit, columns: list[str], where: str) -> _Columns:
        """Check the configured columns exist and pick the transcript column when none is configured."""
        options = self.options
        text = options.text_column or pick_text_column(columns)
        if text is None:
            raise DataError(
                f"hub dataset {where}: no transcript column among {', '.join(columns)} "
                f"(looked for {', '.join(TEXT_COLUMNS)}; set text_column)"
            )
        if options.text_column is None:
            notice = f"hub dataset {options.repo!r}: transcripts from column {text!r} (set text_column to choose)"
            if notice not in self.notices:
                self.notices.append(notice)
        wanted = [opened.audio_column or "audio", text]
        wanted += [options.language_column] if options.language_column else []
        wanted += [options.id_column] if options.id_column else []
        missing = [column for column in wanted if column not in columns]
        if missing:
            raise DataError(
                f"hub dataset {where}: no column {', '.join(map(repr, missing))} "
                f"(its columns: {', '.join(columns)}; set audio_column / text_column / language_column)"
            )
        return _Columns(options.language, text, options.language_column, options.id_column)


@dataclass(frozen=True)
class _Columns:
    """The columns a reader takes each example's fields from, and the language of rows without a column."""

    language_default: str | None
    text: str
    language: str | None
    id: str | None


class _RowReader:
    """Turns the rows of one opened split into examples."""

    def __init__(self, columns: _Columns, opened: OpenedSplit) -> None:
        self.columns = columns
        self.opened = opened
        self.language_label = label_reader(opened.features, columns.language)

    def example(self, row: dict[str, Any], audio_ref: Any, index: int, split_name: str, where: str) -> Example:
        """One example; its audio as bytes, a local path or a fetcher, as the layout provides it."""
        columns = self.columns
        text = row.get(columns.text)
        if not isinstance(text, str):
            raise DataError(f"{columns.text} must be text, got {type(text).__name__}")
        language = self._language(row)
        row_id = row.get(columns.id) if columns.id else None
        return LazyExample(
            id=str(row_id if row_id is not None else f"{split_name}-{index}"),
            text=clean_transcript(text),
            language=language,
            origin=where,
            **self.opened.audio_of(audio_ref),
        )

    def _language(self, row: dict[str, Any]) -> str | None:
        column = self.columns.language
        if column is None:
            return self.columns.language_default
        value = self.language_label(row.get(column))
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise DataError(f"{column} holds {value!r}, not a language code")
        return value


@hookimpl
def register_data_sources(register) -> None:
    """Register the ``hub`` source."""
    register(HubDatasetSource)

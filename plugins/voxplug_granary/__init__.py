"""The ``granary`` data source: NVIDIA Granary transcripts joined to audio you hold or stream.

Granary (``nvidia/Granary``, CC-BY-4.0) publishes pseudo-labelled transcripts and English translations for 25
European languages as JSONL manifests, without audio. This source streams one manifest (config
``<language>_<corpus>``, split ``asr`` or ``ast``) and finds each row's audio under a local ``audio_root`` folder
(by ``audio_filepath``; ``offset`` and ``duration`` are honoured, so rows may be stretches of long recordings) or in
a companion dataset streamed alongside it (``audio_dataset``; for the YODAS part ``espnet/yodas-granary``, matched
on ``utt_id``). A combination Granary does not have (``sv_librilight``, English ``ast``) is refused when the config
is validated. A row whose audio cannot be found is counted (:attr:`GranarySource.missing_audio`) and reported as a
:class:`~voxplug.data.interface.RowProblem`, never dropped silently; a row without a usable duration (VoxPopuli's
manifests have ``null`` or ``"None"``) gets it from the audio when the run checks it::

    data:
      source: granary
      granary:
        language: sv
        corpus: voxpopuli
        task: asr                 # or ast: the English translation is the target text
        audio_root: corpora/voxpopuli
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from voxplug_hub_datasets.errors import explain_load_error

from voxplug import hookimpl
from voxplug.api import (
    STREAM_ABOVE_BYTES,
    DataError,
    DataSource,
    Example,
    PluginOptions,
    RowProblem,
    StreamPieces,
    clean_transcript,
    iter_block,
    iter_jsonl,
    iter_jsonl_lines,
    plan_blocks,
)
from voxplug_granary.catalog import (
    CORPORA,
    GRANARY_REPO,
    LANGUAGE_NAMES,
    LANGUAGES,
    TEXT_FIELDS,
    YODAS_AUDIO_REPO,
    YODAS_AUDIO_SPLITS,
    combination_problem,
    config_name,
)
from voxplug_granary.locate import CompanionAudio, CompanionClip, CompanionUnavailable, FolderAudio
from voxplug_granary.segments import SegmentExample


class GranaryOptions(PluginOptions):
    """Options of the ``granary`` source."""

    language: str = Field(description=f"source language, one of: {', '.join(LANGUAGES)}")
    corpus: str = Field(description=f"source corpus, one of: {', '.join(CORPORA)}")
    task: Literal["asr", "ast"] = Field("asr", description="asr: transcripts; ast: English translations")
    repo: str = Field(GRANARY_REPO, description="the Granary dataset on the Hub")
    revision: str | None = None
    manifest: Path | None = Field(None, description="a local copy of the manifest JSONL (instead of streaming it)")
    audio_root: Path | None = Field(
        None, description="local folder holding the corpus audio, laid out as in the manifest"
    )
    audio_dataset: str | None = Field(
        None,
        description=f"a Hub dataset (or local folder) holding the audio instead, streamed alongside the manifest "
        f"(for the yodas corpus: {YODAS_AUDIO_REPO})",
    )
    audio_dataset_config: str | None = Field(
        None, description=f"its configuration (default for {YODAS_AUDIO_REPO}: the language's name, e.g. Swedish)"
    )
    audio_dataset_split: str | None = Field(
        None,
        description=f"its split (default for {YODAS_AUDIO_REPO}: asr_only for asr, ast for ast; otherwise train)",
    )
    audio_dataset_audio_column: str = "audio"
    audio_dataset_key: Literal["utt_id", "path"] | None = Field(
        None, description="match rows by utt_id or by audio path (default: utt_id when the companion has that column)"
    )
    audio_dataset_path_column: str | None = Field(None, description="column of paths (default: the audio's own path)")
    audio_dataset_window: int = Field(
        2048, ge=1, description="manifest rows that may wait for their companion audio at once"
    )
    audio_dataset_max_unmatched: int = Field(
        100_000, ge=1, description="stop when this many companion rows in a row match nothing (wrong config or order)"
    )
    text_field: str | None = Field(
        None, description="manifest field of the target text (default: text, or answer for ast)"
    )
    max_rows: int | None = Field(None, ge=1, description="read at most this many manifest rows")

    @field_validator("language", "corpus")
    @classmethod
    def _known_to_granary(cls, value: str, info: ValidationInfo) -> str:
        known = LANGUAGES if info.field_name == "language" else CORPORA
        if value not in known:
            raise ValueError(f"Granary has no {info.field_name} {value!r} (expected one of: {', '.join(known)})")
        return value

    @field_validator("corpus", "task")
    @classmethod
    def _granary_has_it(cls, value: str, info: ValidationInfo) -> str:
        """Refuse a corpus the language lacks, or a task its corpus lacks, listing what Granary has instead."""
        language = info.data.get("language")
        corpus = value if info.field_name == "corpus" else info.data.get("corpus")
        if language is None or corpus is None:  # already reported as invalid
            return value
        task = value if info.field_name == "task" else "asr"
        problem = combination_problem(language, corpus, task)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _audio_somewhere(self) -> GranaryOptions:
        if self.audio_root is None and self.audio_dataset is None:
            raise ValueError(
                "Granary ships transcripts only: set audio_root (a folder holding the corpus audio) "
                f"or audio_dataset (a dataset holding it, e.g. {YODAS_AUDIO_REPO} for the yodas corpus)"
            )
        return self

    def companion_config(self) -> str | None:
        """The companion's configuration: as set, or the language's name for ``espnet/yodas-granary``."""
        if self.audio_dataset_config is not None or self.audio_dataset != YODAS_AUDIO_REPO:
            return self.audio_dataset_config
        return LANGUAGE_NAMES[self.language]

    def companion_split(self) -> str:
        """The companion's split: as set, the task's split of ``espnet/yodas-granary``, or ``train``."""
        if self.audio_dataset_split is not None:
            return self.audio_dataset_split
        return YODAS_AUDIO_SPLITS[self.task] if self.audio_dataset == YODAS_AUDIO_REPO else "train"


class GranarySource(DataSource):
    """Examples from a Granary manifest, with audio from a local folder or a companion dataset."""

    name = "granary"
    description = "NVIDIA Granary manifests (<lang>_<corpus>, asr/ast) joined to local or streamed companion audio"
    Options = GranaryOptions
    options: GranaryOptions

    def __init__(self, options: Any = None, *, base_dir: Path | None = None) -> None:
        super().__init__(options, base_dir=base_dir)
        self.missing_audio = 0

    @property
    def streaming(self) -> bool:
        """True when the manifest or the audio streams from the Hub, or a local manifest is larger than
        :data:`~voxplug.data.streaming.STREAM_ABOVE_BYTES` (voxplug then streams the rows, checking them lazily)."""
        if self.options.manifest is None or self.options.audio_dataset is not None:
            return True
        try:
            return self._manifest_path().stat().st_size > STREAM_ABOVE_BYTES
        except OSError:
            return False

    @property
    def config_name(self) -> str:
        """The Hub configuration read, e.g. ``sv_voxpopuli``."""
        return config_name(self.options.language, self.options.corpus)

    def dataset_id(self) -> str | None:
        """``nvidia/Granary``, for model-card metadata."""
        return self.options.repo

    def stream_pieces(self, split: str = "train") -> StreamPieces | None:
        """The manifest in pieces for a stream: a local one in blocks of whole lines, a Hub one in its files (when it
        has several). None with a companion audio dataset, which is joined to the manifest in one ordered pass, and
        with ``max_rows``, which takes the first rows."""
        options = self.options
        if options.audio_dataset is not None or options.max_rows is not None:
            return None
        if options.manifest is not None:
            plan = plan_blocks(self._manifest_path())
            return StreamPieces(tuple(("block", block) for block in plan.blocks), rows=plan.lines)
        files = self._manifest_files(self._where())
        return StreamPieces(tuple(("file", url) for url in files)) if len(files) > 1 else None

    def piece_examples(self, piece: Any, split: str = "train") -> Iterator[Example]:
        """The examples of one piece :meth:`stream_pieces` returned (audio from ``audio_root``)."""
        kind, value = piece
        if kind == "block":
            rows, label = iter_block(self._manifest_path(), value), None
        else:
            rows, label = self._file_rows(value, self._where()), value.rsplit("/", 1)[-1]
        for example in self._rows_needing_companion(self._folder(), None, rows, label):
            if example is not None:
                yield example

    def examples(self, split: str = "train") -> Iterator[Example]:
        """Yield each manifest row whose audio is found; the others become problems (voxplug splits the rows).

        A companion dataset that cannot be read stops this with one :class:`DataError`, never a problem per row.
        """
        folder = self._folder()
        companion = self._companion()
        waiting = self._rows_needing_companion(folder, companion)
        if companion is None:
            yield from (example for example in waiting if example is not None)
            return
        for (number, row, where), clip in companion.join(item for item in waiting if item is not None):
            if clip is None:
                self._missing(where, row, [companion.describe()])
                continue
            try:
                yield self._example(row, where, number, clip=clip)
            except DataError as exc:
                self._problem(where, exc)

    # -- manifest ------------------------------------------------------------------------------------------

    def _rows_needing_companion(
        self,
        folder: FolderAudio | None,
        companion: CompanionAudio | None,
        rows: Iterator[tuple[int, dict[str, Any] | RowProblem]] | None = None,
        file: str | None = None,
    ) -> Iterator[Any]:
        """Examples whose audio is in the folder; ``((number, row, where), keys)`` for those the companion may hold.

        ``rows`` are the manifest's (all of them by default), numbered within ``file`` when given. Rows that fail are
        recorded as problems here (and yield None, so that the caller's stream keeps moving).
        """
        for line, row in self._manifest_rows() if rows is None else rows:
            number: int | str = line if file is None else f"{file.removesuffix('.jsonl')}:{line}"
            where = f"granary {self.config_name}/{self.options.task} row {number}"
            if isinstance(row, RowProblem):
                self.problems.append(RowProblem(where, row.reason, code="unreadable_line"))
                yield None
                continue
            try:
                found = folder.find(_audio_filepath(row)) if folder is not None else None
                if found is not None:
                    yield self._example(row, where, number, path=found)
                elif companion is not None:
                    yield (number, row, where), companion.manifest_keys(row)
                else:
                    self._missing(where, row, [folder.describe()] if folder is not None else [])
                    yield None
            except CompanionUnavailable:
                raise
            except DataError as exc:
                self._problem(where, exc)
                yield None

    def _manifest_rows(self) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
        rows = self._local_rows() if self.options.manifest is not None else self._hub_rows()
        for count, (number, row) in enumerate(rows):
            if self.options.max_rows is not None and count >= self.options.max_rows:
                return
            yield number, row

    def _local_rows(self) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
        yield from iter_jsonl(self._manifest_path())

    def _manifest_path(self) -> Path:
        manifest = self.options.manifest
        assert manifest is not None
        return manifest if manifest.is_absolute() else self.base_dir / manifest

    def _where(self) -> str:
        return f"granary {self.options.repo} config {self.config_name!r} split {self.options.task!r}"

    def _hub_rows(self) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
        """The rows of the task's manifest files on the Hub, streamed line by line, shard after shard.

        ``datasets`` resolves the card's ``configs`` into files; the lines are read as JSON one by one rather than
        through the ``json`` builder, which casts every split to the columns of the first (``ast`` rows have an
        ``answer`` that ``asr`` rows lack) and every file to the types of the first rows (a ``null`` duration).
        """
        where = self._where()
        number = 0
        for url in self._manifest_files(where):
            for _line, row in self._file_rows(url, where):
                number += 1
                yield number, row

    @staticmethod
    def _file_rows(url: str, where: str) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
        """The rows of one manifest file on the Hub, streamed line by line."""
        from datasets.utils.file_utils import xopen

        try:
            with xopen(url, "rb") as handle:
                yield from iter_jsonl_lines(handle, url.rsplit("/", 1)[-1])
        except DataError:
            raise
        except Exception as exc:  # a stream that breaks off: the manifest cannot be read on
            raise DataError(f"{where}: cannot be streamed: {explain_load_error(exc)}") from exc

    def _manifest_files(self, where: str) -> list[str]:
        import datasets

        options = self.options
        try:
            builder = datasets.load_dataset_builder(options.repo, self.config_name, revision=options.revision)
        except Exception as exc:  # datasets raises many types; all mean the manifest cannot be found
            raise DataError(
                f"{where}: cannot be streamed: {explain_load_error(exc)}; or set manifest to a local copy of it"
            ) from exc
        files = (builder.config.data_files or {}).get(options.task)
        if not files:
            splits = ", ".join(str(split) for split in builder.config.data_files or {}) or "none"
            raise DataError(f"{where}: no such split in the dataset card (its splits: {splits})")
        return [str(file) for file in files]

    # -- audio ---------------------------------------------------------------------------------------------

    def _folder(self) -> FolderAudio | None:
        root = self.options.audio_root
        if root is None:
            return None
        return FolderAudio(root if root.is_absolute() else self.base_dir / root)

    def _companion(self) -> CompanionAudio | None:
        options = self.options
        if options.audio_dataset is None:
            return None
        local = self.base_dir / options.audio_dataset
        return CompanionAudio(
            str(local) if local.exists() else options.audio_dataset,
            config=options.companion_config(),
            split=options.companion_split(),
            audio_column=options.audio_dataset_audio_column,
            key=options.audio_dataset_key,
            path_column=options.audio_dataset_path_column,
            window=options.audio_dataset_window,
            max_unmatched=options.audio_dataset_max_unmatched,
        )

    def _missing(self, where: str, row: dict[str, Any], places: list[str]) -> None:
        self.missing_audio += 1
        name = f"of utt_id {row['utt_id']}" if row.get("utt_id") else f"file {row.get('audio_filepath')}"
        reason = f"audio {name} not found in {' or '.join(places) or 'any audio source'}"
        self.problems.append(RowProblem(where, reason, code="missing_audio"))

    def _problem(self, where: str, exc: DataError) -> None:
        self.problems.append(RowProblem(where, str(exc), code=getattr(exc, "code", "rejected")))

    # -- rows ----------------------------------------------------------------------------------------------

    def _example(
        self,
        row: dict[str, Any],
        where: str,
        number: int | str,
        *,
        path: Path | None = None,
        clip: CompanionClip | None = None,
    ) -> Example:
        """The example of one manifest row, its audio from a file under ``audio_root`` or a companion clip."""
        text_field = self.options.text_field or TEXT_FIELDS[self.options.task]
        text = row.get(text_field)
        if not isinstance(text, str):
            raise DataError(f"no {text_field!r} text (expected the {self.options.task} target in that field)")
        audio_filepath = row.get("audio_filepath")
        duration = _duration_of(row)
        offset = _offset_of(row)
        if clip is not None and clip.is_segment:  # the companion holds the utterance itself, already cut
            offset, duration = 0.0, clip.duration_s if clip.duration_s is not None else duration
        return SegmentExample(
            id=f"{self.config_name}-{self.options.task}-{number}",
            text=clean_transcript(text),
            language=str(row.get("source_lang") or self.options.language),
            task="translate" if self.options.task == "ast" else "transcribe",
            target_language=str(row.get("target_lang") or "en") if self.options.task == "ast" else None,
            audio_path=path if path is not None else (clip.audio_path if clip else None),
            audio_bytes=clip.audio_bytes if clip else None,
            duration_s=duration,
            origin=where,
            meta={key: row[key] for key in ("audio_filepath", "utt_id") if row.get(key)} or {"row": audio_filepath},
            offset_s=offset,
        )


def _audio_filepath(row: dict[str, Any]) -> str:
    value = row.get("audio_filepath")
    if not isinstance(value, str) or not value:
        raise DataError("no audio_filepath")
    return value


def _duration_of(row: dict[str, Any]) -> float | None:
    """The row's ``duration`` in seconds; None when it is missing, ``null``, NaN or ``"None"`` (read from the audio)."""
    value = row.get("duration")
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null", "nan")):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise DataError(f"duration {value!r} is not a number of seconds") from None
    if math.isnan(seconds):
        return None
    if math.isinf(seconds) or seconds <= 0:
        raise DataError(f"duration {value!r} is not a positive number of seconds")
    return seconds


def _offset_of(row: dict[str, Any]) -> float:
    value = row.get("offset")
    if value is None or value == "":
        return 0.0
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise DataError(f"offset {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise DataError(f"offset {value!r} is not a non-negative number of seconds")
    return seconds


@hookimpl
def register_data_sources(register) -> None:
    """Register the ``granary`` source."""
    register(GranarySource)


@hookimpl
def reading_phrases(language: str) -> tuple[str, list[str]] | None:
    """Granary transcripts of reading length in ``language``; None outside Granary's 25 languages."""
    from voxplug_granary.catalog import LANGUAGES
    from voxplug_granary.phrases import granary_pool

    return ("granary", granary_pool(language)) if language in LANGUAGES else None

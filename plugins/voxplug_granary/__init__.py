"""The ``granary`` data source: NVIDIA Granary transcripts joined to audio you hold.

Granary (``nvidia/Granary``, CC-BY-4.0) publishes pseudo-labelled transcripts and English translations for 25
European languages as JSONL manifests, without audio. This source streams one manifest (config
``<language>_<corpus>``, split ``asr`` or ``ast``) and finds each row's ``audio_filepath`` under a local
``audio_root`` folder or in a companion dataset you name (``audio_dataset``); ``offset`` and ``duration`` are
honoured, so rows may be stretches of long recordings. A row whose audio cannot be found is counted
(:attr:`GranarySource.missing_audio`) and reported as a :class:`~voxplug.data.interface.RowProblem`, never dropped
silently::

    data:
      source: granary
      granary:
        language: sv
        corpus: voxpopuli
        task: asr                 # or ast: the English translation is the target text
        audio_root: corpora/voxpopuli
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from voxplug import hookimpl
from voxplug.data.interface import DataSource, Example, RowProblem
from voxplug.data.manifest import iter_jsonl
from voxplug.data.text import clean_transcript
from voxplug.errors import DataError
from voxplug.extension import PluginOptions
from voxplug_granary.catalog import CORPORA, GRANARY_REPO, LANGUAGES, TEXT_FIELDS, config_name
from voxplug_granary.locate import CompanionAudio, FolderAudio
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
    audio_dataset: str | None = Field(None, description="a Hub dataset (or local folder) holding the audio instead")
    audio_dataset_config: str | None = None
    audio_dataset_split: str = "train"
    audio_dataset_audio_column: str = "audio"
    audio_dataset_path_column: str | None = Field(None, description="column of paths (default: the audio's own path)")
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

    @model_validator(mode="after")
    def _audio_somewhere(self) -> GranaryOptions:
        if self.audio_root is None and self.audio_dataset is None:
            raise ValueError(
                "Granary ships transcripts only: set audio_root (a folder holding the corpus audio) "
                "or audio_dataset (a dataset holding it)"
            )
        return self


class GranarySource(DataSource):
    """Examples from a Granary manifest, with audio from a local folder or a companion dataset."""

    name = "granary"
    description = "NVIDIA Granary manifests (<lang>_<corpus>, asr/ast) joined to local or companion audio"
    Options = GranaryOptions
    options: GranaryOptions

    def __init__(self, options: Any = None, *, base_dir: Path | None = None) -> None:
        super().__init__(options, base_dir=base_dir)
        self.missing_audio = 0
        self._locators: list[Any] | None = None

    @property
    def streaming(self) -> bool:
        """True when the manifest streams from the Hub (voxplug then checks audio lazily)."""
        return self.options.manifest is None

    @property
    def config_name(self) -> str:
        """The Hub configuration read, e.g. ``sv_voxpopuli``."""
        return config_name(self.options.language, self.options.corpus)

    def dataset_id(self) -> str | None:
        """``nvidia/Granary``, for model-card metadata."""
        return self.options.repo

    def examples(self, split: str = "train") -> Iterator[Example]:
        """Yield each manifest row whose audio is found; the others become problems (voxplug splits the rows)."""
        for number, row in self._manifest_rows():
            where = f"granary {self.config_name}/{self.options.task} row {number}"
            if isinstance(row, RowProblem):
                self.problems.append(RowProblem(where, row.reason))
                continue
            try:
                yield self._example(row, where, number)
            except DataError as exc:
                self.problems.append(RowProblem(where, str(exc)))

    # -- manifest ------------------------------------------------------------------------------------------

    def _manifest_rows(self) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
        rows = self._local_rows() if self.options.manifest is not None else self._hub_rows()
        for count, (number, row) in enumerate(rows):
            if self.options.max_rows is not None and count >= self.options.max_rows:
                return
            yield number, row

    def _local_rows(self) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
        manifest = self.options.manifest
        assert manifest is not None
        yield from iter_jsonl(manifest if manifest.is_absolute() else self.base_dir / manifest)

    def _hub_rows(self) -> Iterator[tuple[int, dict[str, Any] | RowProblem]]:
        import datasets

        try:
            rows = datasets.load_dataset(
                self.options.repo,
                self.config_name,
                split=self.options.task,
                streaming=True,
                revision=self.options.revision,
            )
        except Exception as exc:  # datasets raises many types; all mean the manifest cannot be read
            raise DataError(
                f"granary {self.options.repo} config {self.config_name!r} split {self.options.task!r}: "
                f"cannot be streamed ({exc}); a Hub token (HF_TOKEN) and network access are needed, "
                "or set manifest to a local copy"
            ) from exc
        yield from enumerate(rows, start=1)

    # -- rows ----------------------------------------------------------------------------------------------

    def _example(self, row: dict[str, Any], where: str, number: int) -> Example:
        text_field = self.options.text_field or TEXT_FIELDS[self.options.task]
        text = row.get(text_field)
        if not isinstance(text, str):
            raise DataError(f"no {text_field!r} text (expected the {self.options.task} target in that field)")
        audio_filepath = row.get("audio_filepath")
        if not isinstance(audio_filepath, str) or not audio_filepath:
            raise DataError("no audio_filepath")
        audio = self._find_audio(audio_filepath)
        duration = row.get("duration")
        return SegmentExample(
            id=f"{self.config_name}-{self.options.task}-{number}",
            text=clean_transcript(text),
            language=self._language(row),
            audio_path=audio if isinstance(audio, Path) else None,
            duration_s=float(duration) if isinstance(duration, (int, float)) else None,
            origin=where,
            meta={"audio_filepath": audio_filepath},
            offset_s=float(row.get("offset") or 0.0),
            fetch_audio=None if isinstance(audio, Path) else audio,
        )

    def _language(self, row: dict[str, Any]) -> str:
        if self.options.task == "ast":
            return str(row.get("target_lang") or "en")
        return str(row.get("source_lang") or self.options.language)

    def _find_audio(self, audio_filepath: str) -> Any:
        for locator in self._audio_locators():
            found = locator.find(audio_filepath)
            if found is not None:
                return found
        self.missing_audio += 1
        places = " or ".join(locator.describe() for locator in self._audio_locators())
        raise DataError(f"audio file {audio_filepath} not found in {places}")

    def _audio_locators(self) -> list[Any]:
        if self._locators is None:
            options = self.options
            self._locators = []
            if options.audio_root is not None:
                root = options.audio_root if options.audio_root.is_absolute() else self.base_dir / options.audio_root
                self._locators.append(FolderAudio(root))
            if options.audio_dataset is not None:
                local = self.base_dir / options.audio_dataset
                self._locators.append(
                    CompanionAudio(
                        str(local) if local.exists() else options.audio_dataset,
                        config=options.audio_dataset_config,
                        split=options.audio_dataset_split,
                        audio_column=options.audio_dataset_audio_column,
                        path_column=options.audio_dataset_path_column,
                    )
                )
        return self._locators


@hookimpl
def register_data_sources(register) -> None:
    """Register the ``granary`` source."""
    register(GranarySource)

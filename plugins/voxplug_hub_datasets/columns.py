"""Which columns of a speech dataset hold the audio, the transcript and the language, and how to read them.

Public ASR datasets name their transcript column differently (Common Voice ``sentence``, LibriSpeech ``text``,
FLEURS ``transcription``, VoxPopuli ``normalized_text``, WebDataset shards ``txt``); when the config names none,
the first of :data:`TEXT_COLUMNS` present is used and the source says so. Language columns may be ``ClassLabel``
integers (FLEURS ``lang_id``, VoxPopuli ``language``), read back to their label strings with ``int2str``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TEXT_COLUMNS = (
    "text",
    "sentence",
    "transcription",
    "normalized_text",
    "transcript",
    "raw_transcription",
    "raw_text",
    "txt",
)
"""Transcript column names of public datasets, in the order one is picked when several are present."""

AUDIO_FILE_EXTENSIONS = ("wav", "flac", "mp3", "ogg", "opus")
"""Audio keys of WebDataset shards (file extensions) voxplug reads with soundfile."""


def pick_text_column(columns: list[str]) -> str | None:
    """The first of :data:`TEXT_COLUMNS` among ``columns``, or None."""
    return next((name for name in TEXT_COLUMNS if name in columns), None)


def pick_audio_column(columns: list[str], features: Any) -> str | None:
    """``audio`` if present, else the first column whose feature is ``Audio``, else a WebDataset audio key."""
    if "audio" in columns:
        return "audio"
    if features is not None:
        import datasets

        for name in columns:
            if isinstance(features.get(name), datasets.Audio):
                return name
    return next((name for name in columns if name.rsplit(".", 1)[-1].lower() in AUDIO_FILE_EXTENSIONS), None)


def label_reader(features: Any, column: str | None) -> Callable[[Any], Any]:
    """A function that turns a cell of ``column`` into its label: ``int2str`` for a ``ClassLabel``, else as is."""
    if column is None or features is None:
        return _as_is
    import datasets

    feature = features.get(column)
    if isinstance(feature, datasets.ClassLabel):
        return lambda value: feature.int2str(value) if isinstance(value, int) and value >= 0 else value
    return _as_is


def _as_is(value: Any) -> Any:
    return value

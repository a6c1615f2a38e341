"""Turn one incoming clip and transcript into what a dataset stores, or say exactly why they cannot be used.

:func:`prepare_clip` decodes any supported file (or bytes, or a ``(samples, rate)`` pair), converts it to 16 kHz
mono, runs the quality checks of :mod:`voxplug.data.audio` and computes the content hash; :func:`prepare_text`
cleans and checks a transcript. Both raise :class:`~voxplug.errors.AudioError` / :class:`~voxplug.errors.DataError`
for errors and return warnings (quiet or clipped audio, ...) for the caller to show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from voxplug.data.audio import (
    MAX_DURATION_S,
    TARGET_RATE,
    AudioClip,
    analyse_clip,
    check_clip,
    content_hash,
    load_audio_16k,
    resample_to_16k,
    to_mono,
)
from voxplug.data.issues import Issue
from voxplug.data.languages import canonical_language
from voxplug.data.text import check_transcript, clean_transcript
from voxplug.errors import AudioError, DataError

RawAudio = tuple[np.ndarray, int]
"""Samples already in memory: ``(array of shape (frames,) or (frames, channels), sample rate)``."""

AudioInput = Union[str, "os.PathLike[str]", bytes, RawAudio]
"""What :func:`prepare_clip` accepts: a file path, a file's bytes, or :data:`RawAudio`."""


@dataclass
class PreparedClip:
    """A clip ready to be stored: 16 kHz mono samples, where they came from, their hash and any warnings."""

    samples: np.ndarray
    sample_rate: int
    channels: int
    duration_s: float
    sha256: str
    warnings: list[Issue] = field(default_factory=list)


def prepare_clip(
    audio: AudioInput,
    *,
    name: str,
    max_duration_s: float = MAX_DURATION_S,
    min_duration_s: float | None = None,
) -> PreparedClip:
    """Decode, convert to 16 kHz mono, check and hash one clip.

    Raises :class:`AudioError` naming ``name`` for unreadable files and for the errors of
    :func:`voxplug.data.audio.check_clip` (too long, too short, silent, empty). Clips are rejected, never
    truncated.
    """
    clip = _decode(audio, name=name, max_duration_s=max_duration_s)
    stats = analyse_clip(clip.samples, TARGET_RATE)
    limits = {"max_duration_s": max_duration_s}
    if min_duration_s is not None:
        limits["min_duration_s"] = min_duration_s
    issues = check_clip(stats, **limits)
    errors = [issue for issue in issues if issue.is_error]
    if errors:
        raise AudioError("; ".join(issue.describe(name) for issue in errors))
    return PreparedClip(
        samples=clip.samples,
        sample_rate=clip.sample_rate,
        channels=clip.channels,
        duration_s=round(clip.duration_s, 3),
        sha256=content_hash(clip.samples),
        warnings=[issue for issue in issues if not issue.is_error],
    )


def _decode(audio: AudioInput, *, name: str, max_duration_s: float) -> AudioClip:
    if isinstance(audio, tuple):
        samples, rate = audio
        array = np.asarray(samples, dtype=np.float32)
        if array.size == 0:
            raise AudioError(f"{name}: the recording holds no audio samples")
        channels = 1 if array.ndim == 1 else array.shape[1]
        mono = resample_to_16k(to_mono(array), int(rate))
        clip = AudioClip(samples=mono, sample_rate=int(rate), channels=channels, duration_s=len(mono) / TARGET_RATE)
        if clip.duration_s > max_duration_s:
            raise AudioError(f"{name}: {clip.duration_s:.1f} s is longer than the {max_duration_s:g} s limit")
        return clip
    return load_audio_16k(audio, max_duration_s=max_duration_s, name_for_errors=name)


def prepare_text(text: str, *, name: str) -> tuple[str, list[Issue]]:
    """Return the cleaned transcript and its warnings; raise :class:`DataError` naming ``name`` on an error."""
    if not isinstance(text, str):
        raise DataError(f"{name}: the transcript must be text, got {type(text).__name__}")
    issues = check_transcript(text)
    errors = [issue for issue in issues if issue.is_error]
    if errors:
        raise DataError("; ".join(issue.describe(name) for issue in errors))
    return clean_transcript(text), [issue for issue in issues if not issue.is_error]


def check_language(language: str | None, *, name: str) -> str | None:
    """Return ``language`` in its canonical form (``sv_SE`` → ``sv-SE``; None or blank stays None); raise
    :class:`DataError` if it is not an ISO 639 language code (see :func:`voxplug.data.languages.canonical_language`).
    """
    if language is None or language == "":
        return None
    return canonical_language(language, name=name)

"""The aligner extension type: when each word of a transcript is spoken in its clip.

Streaming models learn from text placed on the audio's time grid (Voxtral Realtime puts each word's tokens at the
frames where it was spoken, shifted by its delay), so their collators need word timings. An :class:`Aligner`
gives them: from timings the data already has (a ``words`` field), or computed from the audio with a model.
Plugins hand aligners over through the ``register_aligners`` hook; a streaming collator names the one it uses in
its options (``model.<collator>.aligner``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voxplug.errors import DataError
from voxplug.extension import Extension


@dataclass(frozen=True)
class WordTiming:
    """One spoken word and when it is spoken, in seconds from the start of the clip (``start <= end``)."""

    word: str
    start: float
    end: float

    def as_dict(self) -> dict[str, Any]:
        """``{"word", "start", "end"}``: the shape of a row's ``words`` field."""
        return {"word": self.word, "start": self.start, "end": self.end}


class Aligner(Extension):
    """Gives every word of a row's transcript its start and end time in the row's audio.

    :meth:`align` receives the row a collator collates: ``audio`` (16 kHz mono float32), ``text``, ``language``
    (None when unknown), ``id`` and, when the data has it, ``words``. It returns one :class:`WordTiming` per
    whitespace-separated word of ``text``, in order, so that the collator can tokenise the transcript's own
    words; a row it cannot align raises :class:`~voxplug.errors.DataError` naming the row. Aligners run where the
    collator runs (data-loader workers, on every rank): load models lazily, once per process.
    """

    def align(self, row: Mapping[str, Any]) -> list[WordTiming]:
        """The timings of ``row["text"].split()``, one per word, in order."""
        raise NotImplementedError


def describe(row: Mapping[str, Any]) -> str:
    """Name a row in error messages: its id when it has one."""
    row_id = row.get("id")
    return "a row without an id" if row_id is None else f"row {row_id!r}"


def transcript_words(row: Mapping[str, Any]) -> list[str]:
    """The whitespace-separated words of a row's transcript; an empty or missing transcript is a DataError."""
    text = row.get("text")
    if not isinstance(text, str) or not text.split():
        raise DataError(f"{describe(row)}: the transcript is empty (an aligner needs the words spoken)")
    return text.split()


def parse_word_timings(value: Any, where: str, *, duration_s: float | None = None) -> list[WordTiming]:
    """Check a ``words`` field (a list of ``{"word", "start", "end"}`` in seconds) and return it as timings.

    Each entry needs a non-empty ``word`` (``text`` is accepted too) and finite ``0 <= start <= end``; starts
    must not decrease, and with ``duration_s`` no word may end more than 50 ms after the clip does. ``where``
    names the row in the error.
    """
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not value:
        raise DataError(f"{where}: 'words' must be a non-empty list of {{word, start, end}}, got {value!r}")
    timings: list[WordTiming] = []
    for index, entry in enumerate(value):
        timing = _timing(entry, f"{where}: words[{index}]")
        if timings and timing.start < timings[-1].start:
            raise DataError(
                f"{where}: words[{index}] starts at {timing.start} s, before the word before it ({timings[-1].start} s)"
            )
        if duration_s is not None and timing.end > duration_s + 0.05:
            raise DataError(f"{where}: words[{index}] ends at {timing.end} s, after the clip ({duration_s:.3f} s)")
        timings.append(timing)
    return timings


def _timing(entry: Any, where: str) -> WordTiming:
    if not isinstance(entry, Mapping):
        raise DataError(f"{where} must be a mapping with word, start and end, got {entry!r}")
    word = entry.get("word", entry.get("text"))
    if not isinstance(word, str) or not word.strip():
        raise DataError(f"{where} has no word (expected a non-empty 'word' string)")
    bounds = []
    for key in ("start", "end"):
        number = entry.get(key)
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) or number < 0:
            raise DataError(f"{where} ({word!r}): {key} must be a number of seconds >= 0, got {number!r}")
        bounds.append(float(number))
    if bounds[1] < bounds[0]:
        raise DataError(f"{where} ({word!r}): end {bounds[1]} s is before start {bounds[0]} s")
    return WordTiming(word.strip(), bounds[0], bounds[1])

"""The training and evaluation datasets: :class:`~voxplug.data.interface.Example` lists that decode lazily.

Audio is decoded in ``__getitem__`` (on data-loader workers when ``training.dataloader_workers`` > 0), never up
front, and lengths for length-grouped batching come from clip durations: the row's ``duration_s`` or the audio
file's header, never from decoding the audio.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxplug.data.interface import Example


class ExampleDataset:
    """A map-style dataset of examples; item ``i`` is ``{"audio", "text", "language", "id", "task",
    "target_language"}``.

    ``audio`` is 16 kHz mono float32. ``default_language`` fills rows without one (``data.language``).
    ``task`` is ``transcribe``, or ``translate`` for a speech translation row into ``target_language``. A row whose
    source gave word timings (``Example.meta["words"]``) also carries them as ``words``, for aligners.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        *,
        max_duration_s: float | None = None,
        default_language: str | None = None,
    ) -> None:
        self.examples = list(examples)
        self.max_duration_s = max_duration_s
        self.default_language = default_language

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self.examples[index]
        item = {
            "audio": example.load_audio(self.max_duration_s),
            "text": example.text,
            "language": example.language or self.default_language,
            "id": example.id,
            "task": example.task,
            "target_language": example.target_language,
        }
        if "words" in example.meta:
            item["words"] = example.meta["words"]
        return item

    def languages(self) -> list[str | None]:
        """Each example's language (``None`` = automatic)."""
        return [example.language or self.default_language for example in self.examples]

    def durations(self) -> list[float]:
        """Each clip's duration in seconds, from its row or its audio header (no decoding)."""
        return [clip_duration(example) for example in self.examples]


def clip_duration(example: Example) -> float:
    """``example.duration_s``, or the duration read from the audio file's header; 0.0 when unknown."""
    if example.duration_s:
        return float(example.duration_s)
    import soundfile

    try:
        if example.audio_bytes is not None:
            return float(soundfile.info(io.BytesIO(example.audio_bytes)).duration)
        if example.audio_path is not None:
            return float(soundfile.info(str(example.audio_path)).duration)
    except (RuntimeError, soundfile.LibsndfileError):
        return 0.0
    return 0.0

"""Examples that are a stretch of a longer recording, or whose audio is fetched on demand.

Granary manifests may point into long recordings with ``offset`` and ``duration``; a companion Hub dataset holds
audio that should not all sit in memory. :class:`SegmentExample` decodes only its own stretch, when a batch needs it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from voxplug.api import AudioError, ClipTooLongError, LazyExample, resample_to_16k, to_mono


@dataclass
class SegmentExample(LazyExample):
    """A :class:`LazyExample` whose audio is ``duration_s`` seconds from ``offset_s`` of its file (or fetched bytes)."""

    offset_s: float = 0.0

    def load_audio(self, max_duration_s: float | None = None) -> np.ndarray:
        """Decode this example's stretch to 16 kHz mono float32, enforcing ``max_duration_s`` when given."""
        if self.offset_s == 0.0 and self.duration_s is None:
            return super().load_audio(max_duration_s)
        name = self.origin or self.id
        if max_duration_s is not None and self.duration_s is not None and self.duration_s > max_duration_s:
            raise ClipTooLongError(f"{name}: {self.duration_s:.1f} s is longer than the {max_duration_s:g} s limit")
        samples, rate = read_segment(self.audio_source(), self.offset_s, self.duration_s, name=name)
        return resample_to_16k(to_mono(samples), rate)

    def read_duration_s(self) -> float:
        """The stretch's length from the file's header: the rest of the file after ``offset_s`` (not decoded)."""
        whole = super().read_duration_s()
        if self.offset_s >= whole:
            name = self.origin or self.id
            raise AudioError(f"{name}: offset {self.offset_s:g} s is past the end of the audio ({whole:.1f} s)")
        return whole - self.offset_s


def read_segment(
    source: bytes | Path, offset_s: float, duration_s: float | None, *, name: str
) -> tuple[np.ndarray, int]:
    """Read ``duration_s`` seconds (to the end when None) from ``offset_s`` of a file, seeking past the rest."""
    try:
        with sf.SoundFile(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as sound:
            start = round(offset_s * sound.samplerate)
            if start >= sound.frames > 0:
                length = sound.frames / sound.samplerate
                raise AudioError(f"{name}: offset {offset_s:g} s is past the end of the audio ({length:.1f} s)")
            sound.seek(start)
            frames = -1 if duration_s is None else round(duration_s * sound.samplerate)
            samples = sound.read(frames, dtype="float32", always_2d=True)
            rate = sound.samplerate
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{name}: not a readable audio file: {exc}") from exc
    if len(samples) == 0:
        raise AudioError(f"{name}: the segment holds no audio samples")
    if duration_s is not None and len(samples) < round(duration_s * rate) - rate // 100:
        raise AudioError(f"{name}: the file ends {len(samples) / rate:.2f} s into a {duration_s:g} s segment")
    return samples, rate

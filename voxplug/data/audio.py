"""Decode, resample, check and write speech clips.

Everything here works on numpy arrays with soundfile (libsndfile) and soxr; nothing imports torch, so the
functions are cheap to call from any process. Samples are float32 on a -1.0 … 1.0 full scale; "16k" means
16 000 Hz mono, the rate Voxtral's feature extractor expects.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from voxplug.data.issues import Issue
from voxplug.errors import AudioError
from voxplug.tempfiles import replaced_atomically

TARGET_RATE = 16_000
"""The sample rate, in Hz, of every clip voxplug trains on."""

SUPPORTED_FORMATS = ("WAV", "FLAC", "OGG", "MP3")
"""Containers :func:`decode_audio` accepts (libsndfile names; WAVEX and RF64 count as WAV)."""

MAX_DURATION_S = 30.0
"""Voxtral's audio encoder sees 30 s windows; longer clips must be split before training."""
MIN_DURATION_S = 0.3
"""Below this a clip cannot hold a spoken word."""
SILENT_PEAK_DBFS = -60.0
"""A clip whose loudest sample is below this level (about 33 in 16-bit PCM) is treated as silent."""
QUIET_PEAK_DBFS = -30.0
"""A clip whose loudest sample is below this level is usable but suspiciously quiet."""
ACTIVE_FRAME_DBFS = -45.0
"""A 20 ms frame louder than this (RMS) counts as sound rather than background."""
MIN_ACTIVE_S = 0.2
"""A non-silent clip with less sound than this is near-empty (a click, a breath)."""
CLIP_LEVEL = 0.999
"""Samples at or above this magnitude are counted as clipped."""
MAX_CLIPPED_FRACTION = 0.001
"""More than this fraction of clipped samples (0.1 %) earns a warning."""

_FRAME_S = 0.02
_DBFS_FLOOR = -120.0
_WAV_FORMATS = {"WAV", "WAVEX", "RF64"}
_EXPECTED = "expected WAV, FLAC, OGG or MP3"

AudioSource = str | os.PathLike[str] | bytes


class ClipTooLongError(AudioError):
    """A clip longer than the duration limit: the row is skipped and counted, the clip is never truncated."""

    code = "too_long"


@dataclass(frozen=True, eq=False)
class AudioClip:
    """A decoded clip ready for feature extraction.

    ``samples`` is float32, mono, at 16 kHz; ``sample_rate`` and ``channels`` describe the file it came from.
    """

    samples: np.ndarray
    sample_rate: int
    channels: int
    duration_s: float


@dataclass(frozen=True)
class ClipStats:
    """Level and duration measurements of one clip, as returned by :func:`analyse_clip`."""

    duration_s: float
    peak: float
    rms_dbfs: float
    clipped_fraction: float
    active_duration_s: float

    @property
    def peak_dbfs(self) -> float:
        """The loudest sample in dB relative to full scale (-120 for digital silence)."""
        return _to_dbfs(self.peak)

    @property
    def is_silent(self) -> bool:
        """Whether no sample rises above :data:`SILENT_PEAK_DBFS`."""
        return self.peak_dbfs < SILENT_PEAK_DBFS

    @property
    def is_near_empty(self) -> bool:
        """Whether the clip is not silent but holds less than :data:`MIN_ACTIVE_S` of sound."""
        return not self.is_silent and self.active_duration_s < MIN_ACTIVE_S


# --- decoding ---------------------------------------------------------------------------------------------


def decode_audio(source: AudioSource, *, name_for_errors: str | None = None) -> tuple[np.ndarray, int]:
    """Decode a WAV, FLAC, OGG (Vorbis or Opus) or MP3 file, given as a path or as its bytes.

    Returns ``(samples, sample_rate)`` with ``samples`` float32 of shape ``(frames, channels)``, at the file's
    own rate and channel count; any PCM bit depth (8/16/24/32-bit) and float files are accepted.
    Raises :class:`~voxplug.errors.AudioError` naming ``name_for_errors`` (default: the path, or ``<bytes>``)
    for a missing, empty, truncated, corrupt or non-audio file, or one holding no or non-finite samples.
    """
    name = _name_of(source, name_for_errors)
    with _open_sound_file(source, name) as sound:
        return _read_samples(sound, name), sound.samplerate


def load_audio_16k(
    source: AudioSource, max_duration_s: float | None = None, *, name_for_errors: str | None = None
) -> AudioClip:
    """Decode ``source`` and convert it to 16 kHz mono float32.

    With ``max_duration_s``, a longer clip raises :class:`~voxplug.errors.AudioError`
    (``"x.wav: 45.2 s is longer than the 30 s limit"``), checked from the header before decoding when the
    header knows the length.
    """
    name = _name_of(source, name_for_errors)
    with _open_sound_file(source, name) as sound:
        if max_duration_s is not None and sound.frames > 0:
            _reject_too_long(sound.frames / sound.samplerate, max_duration_s, name)
        samples, rate = _read_samples(sound, name), sound.samplerate
    mono_16k = resample_to_16k(to_mono(samples), rate)
    duration_s = len(mono_16k) / TARGET_RATE
    if max_duration_s is not None:
        _reject_too_long(duration_s, max_duration_s, name)
    return AudioClip(samples=mono_16k, sample_rate=rate, channels=samples.shape[1], duration_s=duration_s)


def header_duration_s(source: AudioSource, *, name_for_errors: str | None = None) -> float:
    """The duration in seconds that ``source``'s header declares, without decoding its samples.

    Raises :class:`~voxplug.errors.AudioError` for a file that cannot be opened (the same checks as
    :func:`decode_audio` makes before reading) or whose header does not know its length.
    """
    name = _name_of(source, name_for_errors)
    with _open_sound_file(source, name) as sound:
        if sound.frames <= 0 or sound.samplerate <= 0:
            raise AudioError(f"{name}: the audio header does not say how long the clip is")
        return sound.frames / sound.samplerate


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a ``(frames, channels)`` array; a 1-D array is returned as float32."""
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise ValueError(f"expected samples of shape (frames,) or (frames, channels), got {array.shape}")
    return array.mean(axis=1, dtype=np.float32)


def resample_to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample ``samples`` (1-D, or ``(frames, channels)``) from ``rate`` Hz to 16 kHz with soxr HQ."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    array = np.asarray(samples, dtype=np.float32)
    if rate == TARGET_RATE or len(array) == 0:
        return array
    return soxr.resample(array, rate, TARGET_RATE, quality="HQ")


def _name_of(source: AudioSource, name_for_errors: str | None) -> str:
    if name_for_errors:
        return name_for_errors
    return "<bytes>" if isinstance(source, bytes) else os.fspath(source)


@contextmanager
def _open_binary(source: AudioSource, name: str) -> Iterator[BinaryIO]:
    if isinstance(source, bytes):
        yield io.BytesIO(source)
        return
    try:
        handle = open(source, "rb")
    except OSError as exc:
        raise AudioError(f"{name}: cannot open the file: {exc.strerror or exc}") from exc
    with handle:
        yield handle


@contextmanager
def _open_sound_file(source: AudioSource, name: str) -> Iterator[sf.SoundFile]:
    """Open ``source`` for decoding after the checks libsndfile does not make itself."""
    with _open_binary(source, name) as handle:
        size = handle.seek(0, io.SEEK_END)
        if size == 0:
            raise AudioError(f"{name}: the file is empty (0 bytes); {_EXPECTED} audio")
        _reject_truncated_wav(handle, size, name)
        handle.seek(0)
        try:
            sound = sf.SoundFile(handle)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise AudioError(_unreadable_message(name, exc, handle)) from exc
        with sound:
            if sound.format not in _WAV_FORMATS and sound.format not in SUPPORTED_FORMATS:
                raise AudioError(f"{name}: {sound.format} audio is not supported ({_EXPECTED})")
            yield sound


def _unreadable_message(name: str, exc: Exception, handle: BinaryIO) -> str:
    reason = getattr(exc, "error_string", None) or str(exc)
    message = f"{name}: not a readable audio file ({_EXPECTED}): {reason.rstrip('.')}"
    if _looks_like_text(handle):
        message += " (the file looks like text)"
    return message


def _looks_like_text(handle: BinaryIO) -> bool:
    handle.seek(0)
    head = handle.read(512)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char.isspace() for char in text)


def _reject_truncated_wav(handle: BinaryIO, size: int, name: str) -> None:
    """Raise if a RIFF/WAVE header declares more audio data than the file holds (libsndfile reads on)."""
    data_chunk = _find_wav_data_chunk(handle)
    if data_chunk is None:
        return
    data_start, declared = data_chunk
    present = size - data_start
    if present < declared:
        raise AudioError(
            f"{name}: truncated WAV file: the header declares {declared} bytes of audio "
            f"but only {max(present, 0)} are present; re-export or re-download it"
        )


def _find_wav_data_chunk(handle: BinaryIO) -> tuple[int, int] | None:
    """Return ``(offset of the audio bytes, their declared length)`` of a RIFF/WAVE file, else None."""
    handle.seek(0)
    header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return None
    position = 12
    while True:
        handle.seek(position)
        chunk = handle.read(8)
        if len(chunk) < 8:
            return None
        chunk_id, chunk_size = chunk[:4], int.from_bytes(chunk[4:], "little")
        if chunk_id == b"data":
            # 0 and 0xFFFFFFFF are what streaming writers leave when they cannot seek back.
            return None if chunk_size in (0, 0xFFFFFFFF) else (position + 8, chunk_size)
        position += 8 + chunk_size + (chunk_size & 1)


def _read_samples(sound: sf.SoundFile, name: str) -> np.ndarray:
    try:
        samples = sound.read(dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        reason = getattr(exc, "error_string", None) or str(exc)
        raise AudioError(f"{name}: decoding failed part-way ({_EXPECTED}): {reason}") from exc
    if len(samples) == 0:
        raise AudioError(f"{name}: the file holds no audio samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: the file holds NaN or infinite sample values")
    return samples


def _reject_too_long(duration_s: float, max_duration_s: float, name: str) -> None:
    if duration_s > max_duration_s:
        raise ClipTooLongError(f"{name}: {duration_s:.1f} s is longer than the {max_duration_s:g} s limit")


# --- quality checks ---------------------------------------------------------------------------------------


def analyse_clip(samples: np.ndarray, sample_rate: int = TARGET_RATE) -> ClipStats:
    """Measure the duration, peak, RMS level, clipping and amount of sound of a mono clip."""
    array = to_mono(samples)
    if len(array) == 0:
        return ClipStats(0.0, 0.0, _DBFS_FLOOR, 0.0, 0.0)
    magnitude = np.abs(array)
    return ClipStats(
        duration_s=len(array) / sample_rate,
        peak=float(magnitude.max()),
        rms_dbfs=_to_dbfs(_rms(array)),
        clipped_fraction=float(np.count_nonzero(magnitude >= CLIP_LEVEL)) / len(array),
        active_duration_s=_active_duration_s(array, sample_rate),
    )


def check_clip(
    stats: ClipStats, max_duration_s: float = MAX_DURATION_S, min_duration_s: float = MIN_DURATION_S
) -> list[Issue]:
    """Return the problems of a clip measured by :func:`analyse_clip`, errors first.

    Errors: ``empty``, ``too_long``, ``too_short``, ``silent``. Warnings: ``near_empty``, ``quiet``,
    ``clipped``. Thresholds are the module constants (:data:`SILENT_PEAK_DBFS` and friends).
    """
    if stats.duration_s == 0:
        return [Issue("error", "empty", "the clip holds no audio")]
    issues = _duration_issues(stats, max_duration_s, min_duration_s) + _level_issues(stats)
    return sorted(issues, key=lambda issue: not issue.is_error)


def _duration_issues(stats: ClipStats, max_duration_s: float, min_duration_s: float) -> list[Issue]:
    if stats.duration_s > max_duration_s:
        message = f"{stats.duration_s:.1f} s is longer than the {max_duration_s:g} s limit"
        return [Issue("error", "too_long", message)]
    if stats.duration_s < min_duration_s:
        message = f"{stats.duration_s:.2f} s is shorter than the {min_duration_s:g} s minimum"
        return [Issue("error", "too_short", message)]
    return []


def _level_issues(stats: ClipStats) -> list[Issue]:
    if stats.is_silent:
        message = f"the clip is silent (peak {stats.peak_dbfs:.0f} dBFS, below {SILENT_PEAK_DBFS:g} dBFS)"
        return [Issue("error", "silent", message)]
    issues = []
    if stats.is_near_empty:
        message = (
            f"the clip is nearly empty: only {stats.active_duration_s:.2f} s is louder than {ACTIVE_FRAME_DBFS:g} dBFS"
        )
        issues.append(Issue("warning", "near_empty", message))
    if stats.peak_dbfs < QUIET_PEAK_DBFS:
        message = f"the clip is very quiet (peak {stats.peak_dbfs:.0f} dBFS); check the recording level"
        issues.append(Issue("warning", "quiet", message))
    if stats.clipped_fraction > MAX_CLIPPED_FRACTION:
        message = f"{stats.clipped_fraction:.1%} of samples are clipped at full scale; record at a lower level"
        issues.append(Issue("warning", "clipped", message))
    return issues


def _rms(array: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(array, dtype=np.float64))))


def _to_dbfs(amplitude: float) -> float:
    return 20 * math.log10(amplitude) if amplitude > 10 ** (_DBFS_FLOOR / 20) else _DBFS_FLOOR


def _active_duration_s(array: np.ndarray, sample_rate: int) -> float:
    frame = max(1, round(_FRAME_S * sample_rate))
    usable = len(array) - len(array) % frame
    frames = array[:usable].reshape(-1, frame) if usable else array.reshape(1, -1)
    frame_rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    active_frames = np.count_nonzero(frame_rms > 10 ** (ACTIVE_FRAME_DBFS / 20))
    return float(active_frames * frames.shape[1] / sample_rate)


# --- writing and hashing ----------------------------------------------------------------------------------


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Convert float samples to little-endian int16, clipping at full scale.

    The scale is 32768, the one libsndfile reads 16-bit PCM with, so reading a written file and converting
    it again gives back the same integers.
    """
    scaled = np.round(np.asarray(samples, dtype=np.float64) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype("<i2")


def write_wav_16k(path: str | os.PathLike[str], samples: np.ndarray) -> Path:
    """Write mono 16 kHz ``samples`` as a 16-bit PCM WAV file, atomically, and return its path.

    The data goes to a temporary file in the same directory, which then replaces ``path``; if anything fails,
    the temporary file is removed and an existing ``path`` is left untouched.
    """
    target = Path(path)
    pcm = to_pcm16(_require_mono(samples))
    with replaced_atomically(target) as handle:
        sf.write(handle, pcm, TARGET_RATE, format="WAV", subtype="PCM_16")
    return target


def content_hash(audio: np.ndarray | bytes) -> str:
    """Return the sha256 hex digest of a clip's 16 kHz mono PCM16 samples.

    ``audio`` is either 16 kHz mono float samples or the bytes of an audio file, which are decoded and
    resampled first. The same recording stored twice, or written with :func:`write_wav_16k` and read back,
    gets the same hash, whatever the file names or headers say.
    """
    samples = load_audio_16k(audio).samples if isinstance(audio, bytes) else _require_mono(audio)
    return hashlib.sha256(to_pcm16(samples).tobytes()).hexdigest()


def _require_mono(samples: np.ndarray) -> np.ndarray:
    array = np.asarray(samples)
    if array.ndim != 1:
        raise ValueError(f"expected mono samples of shape (frames,), got shape {array.shape}; use to_mono()")
    return array

"""Real speech from espeak-ng, and a zoo of awkward audio files, for tests and examples.

:func:`synthesize` and :func:`synthesize_words` need the ``espeak-ng`` program (``apt-get install espeak-ng``);
its output is the same bytes on every run of one espeak-ng version, so tests and bundled examples are
reproducible. :func:`synthesize_words` speaks a sentence word by word, so every word's start and end is known to
the sample: ground truth for streaming targets and aligners.
Where ``VOXPLUG_SPEECH_CACHE`` names a folder, what espeak-ng spoke is kept there and read back on a machine
without it (the GPU machine, which installs nothing): ``benchmarks/gpu_wheels.sh`` fills one for the GPU tests.
:func:`make_bad_audio_files` needs nothing but soundfile.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from voxplug.data.alignment import WordTiming
from voxplug.data.audio import decode_audio, resample_to_16k, to_mono, write_wav_16k

ESPEAK_PROGRAM = "espeak-ng"
SPEECH_CACHE_ENV = "VOXPLUG_SPEECH_CACHE"
"""Environment variable naming a folder of espeak-ng output kept for reuse (see :func:`synthesize`)."""

ZOO_TONE_HZ = 440.0
"""Frequency of the tone in every readable file :func:`make_bad_audio_files` writes."""
ZOO_DURATION_S = 2.0
"""Duration of every readable file :func:`make_bad_audio_files` writes, except ``too_long``."""
ZOO_LONG_DURATION_S = 45.0
"""Duration of the ``too_long`` file, over the 30 s limit."""
UNREADABLE_ZOO_FILES = ("corrupt", "truncated", "empty", "not_audio")
"""Keys of :func:`make_bad_audio_files` whose files must be rejected by the decoder."""


def espeak_available() -> bool:
    """Whether speech can be made here: espeak-ng is on ``PATH``, or a speech cache is named."""
    return shutil.which(ESPEAK_PROGRAM) is not None or bool(os.environ.get(SPEECH_CACHE_ENV))


def synthesize(
    sentences: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    voice: str = "en-us",
    rate: int = 150,
    pitch: int = 50,
    prefix: str = "clip",
) -> list[Path]:
    """Speak each sentence with espeak-ng into ``out_dir/{prefix}_{index:03d}.wav`` (16 kHz mono 16-bit).

    ``voice`` is an espeak-ng voice (``espeak-ng --voices`` lists them; beware that espeak-ng silently falls
    back to its default voice for a name it does not know), ``rate`` is in words per minute and ``pitch`` is
    0–99. Returns the paths in the order of ``sentences``. Raises RuntimeError when espeak-ng is
    missing or fails.
    """
    target_dir = Path(out_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    options = ["-v", voice, "-s", str(rate), "-p", str(pitch)]
    return [
        _speak_cached(options, sentence, target_dir / f"{prefix}_{index:03d}.wav")
        for index, sentence in enumerate(sentences)
    ]


def _speak_cached(options: list[str], sentence: str, target: Path) -> Path:
    """:func:`_speak`, through the folder ``VOXPLUG_SPEECH_CACHE`` names when it is set."""
    cache = os.environ.get(SPEECH_CACHE_ENV)
    kept = None
    if cache:
        key = hashlib.sha256("\0".join([*options, sentence]).encode()).hexdigest()[:24]
        kept = Path(cache) / f"{key}.wav"
        if kept.is_file():
            shutil.copyfile(kept, target)
            return target
    program = shutil.which(ESPEAK_PROGRAM)
    if program is None:
        missing = f" and {sentence!r} is not in the speech cache {cache}" if cache else ""
        raise RuntimeError(f"espeak-ng is not installed{missing}; install it with `apt-get install espeak-ng`")
    _speak([program, *options], sentence, target)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(f".{os.getpid()}.partial")
        shutil.copyfile(target, partial)
        os.replace(partial, kept)
    return target


WORD_EDGE_LEVEL = 0.01
"""Amplitude below which a word clip's leading and trailing samples count as silence and are cut."""


def synthesize_words(
    sentence: str,
    target: str | os.PathLike[str],
    *,
    gap_s: float = 0.2,
    lead_s: float = 0.3,
    voice: str = "en-us",
    rate: int = 150,
    pitch: int = 50,
) -> list[WordTiming]:
    """Speak ``sentence`` one word at a time into ``target`` (16 kHz mono 16-bit) and return each word's timing.

    Each word is synthesised on its own, its silent edges (below :data:`WORD_EDGE_LEVEL`) are cut, and the words
    are joined with ``gap_s`` of silence, after ``lead_s`` of leading and before ``lead_s`` of trailing silence;
    a word's start and end are where its samples begin and end. Raises RuntimeError when espeak-ng is missing.
    """
    words = sentence.split()
    if not words:
        raise ValueError("the sentence has no words")
    with tempfile.TemporaryDirectory() as scratch:
        paths = synthesize(words, scratch, voice=voice, rate=rate, pitch=pitch, prefix="word")
        clips = [_trim_silence(decode_audio(path)[0]) for path in paths]
    gap = np.zeros(round(gap_s * 16_000), dtype=np.float32)
    pieces = [np.zeros(round(lead_s * 16_000), dtype=np.float32)]
    timings, cursor = [], pieces[0].shape[0]
    for index, (word, clip) in enumerate(zip(words, clips, strict=True)):
        if index:
            pieces.append(gap)
            cursor += gap.shape[0]
        timings.append(WordTiming(word, cursor / 16_000, (cursor + clip.shape[0]) / 16_000))
        pieces.append(clip)
        cursor += clip.shape[0]
    pieces.append(np.zeros(round(lead_s * 16_000), dtype=np.float32))
    write_wav_16k(Path(target), np.concatenate(pieces))
    return timings


def _trim_silence(samples: np.ndarray) -> np.ndarray:
    """``samples`` without the leading and trailing samples quieter than :data:`WORD_EDGE_LEVEL`."""
    loud = np.flatnonzero(np.abs(to_mono(samples)) >= WORD_EDGE_LEVEL)
    if loud.size == 0:
        raise RuntimeError("espeak-ng produced silence for a word")
    return to_mono(samples)[loud[0] : loud[-1] + 1].astype(np.float32)


def _speak(command: list[str], sentence: str, target: Path) -> Path:
    """Run espeak-ng for one sentence (read from stdin as UTF-8) and store the result at 16 kHz."""
    with tempfile.TemporaryDirectory() as scratch:
        raw_wav = Path(scratch) / "espeak.wav"
        result = subprocess.run(
            [*command, "-b", "1", "-w", str(raw_wav)], input=sentence.encode(), capture_output=True, check=False
        )
        if result.returncode != 0 or not raw_wav.exists():
            stderr = result.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"espeak-ng failed on {sentence!r} (exit {result.returncode}): {stderr}")
        samples, rate = decode_audio(raw_wav, name_for_errors=f"espeak-ng output for {sentence!r}")
    return write_wav_16k(target, resample_to_16k(to_mono(samples), rate))


def make_bad_audio_files(out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the awkward-input zoo into ``out_dir`` and return ``{case: path}``.

    Unreadable (see :data:`UNREADABLE_ZOO_FILES`): ``corrupt`` (a RIFF header over garbage), ``truncated``
    (the header promises more audio than the file holds), ``empty`` (0 bytes) and ``not_audio`` (text),
    all named ``.wav``. Readable, each a :data:`ZOO_DURATION_S` tone at :data:`ZOO_TONE_HZ`:
    ``rate_8k``, ``stereo_44k`` (channels at 0.5 and 0.3), ``pcm24`` (48 kHz), ``pcm32`` (22.05 kHz),
    ``float32``, ``flac``, ``ogg`` (Vorbis), ``opus`` and ``mp3`` (left out when this libsndfile cannot write
    them). Readable but failing checks: ``too_long`` (45 s), ``silent`` (digital zero) and ``clipped``.
    """
    target_dir = Path(out_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    files = _write_unreadable_files(target_dir)
    files.update(_write_format_variants(target_dir))
    files.update(_write_check_failures(target_dir))
    return files


def _tone(rate: int, duration_s: float = ZOO_DURATION_S, level: float = 0.5) -> np.ndarray:
    """A sine at :data:`ZOO_TONE_HZ` with 10 ms fades, as float32."""
    time = np.arange(round(rate * duration_s)) / rate
    fade = np.clip(np.minimum(time, duration_s - time) / 0.01, 0.0, 1.0)
    return (level * fade * np.sin(2 * np.pi * ZOO_TONE_HZ * time)).astype(np.float32)


def _write_unreadable_files(target_dir: Path) -> dict[str, Path]:
    garbage = np.random.default_rng(7).bytes(4000)
    buffer = io.BytesIO()
    sf.write(buffer, _tone(16_000), 16_000, format="WAV", subtype="PCM_16")
    whole = buffer.getvalue()
    contents = {
        "corrupt": b"RIFF" + struct.pack("<I", len(garbage) + 4) + b"WAVE" + garbage,
        "truncated": whole[: len(whole) * 2 // 5],
        "empty": b"",
        "not_audio": b"file\ttext\nclip_000.wav\tthis is a transcript, not audio\n",
    }
    files = {}
    for case, content in contents.items():
        files[case] = target_dir / f"{case}.wav"
        files[case].write_bytes(content)
    return files


def _write_format_variants(target_dir: Path) -> dict[str, Path]:
    variants = {
        "rate_8k": ("rate_8k.wav", 8_000, "WAV", "PCM_16"),
        "stereo_44k": ("stereo_44k.wav", 44_100, "WAV", "PCM_16"),
        "pcm24": ("pcm24.wav", 48_000, "WAV", "PCM_24"),
        "pcm32": ("pcm32.wav", 22_050, "WAV", "PCM_32"),
        "float32": ("float32.wav", 16_000, "WAV", "FLOAT"),
        "flac": ("tone.flac", 22_050, "FLAC", "PCM_16"),
        "ogg": ("tone.ogg", 32_000, "OGG", "VORBIS"),
        "opus": ("tone.opus", 48_000, "OGG", "OPUS"),
        "mp3": ("tone.mp3", 44_100, "MP3", "MPEG_LAYER_III"),
    }
    files = {}
    for case, (file_name, rate, container, subtype) in variants.items():
        if subtype not in sf.available_subtypes(container):
            continue
        samples = _tone(rate)
        if case == "stereo_44k":
            samples = np.stack([samples, samples * 0.6], axis=1)
        files[case] = target_dir / file_name
        sf.write(files[case], samples, rate, format=container, subtype=subtype)
    return files


def _write_check_failures(target_dir: Path) -> dict[str, Path]:
    loud_tone = np.clip(_tone(16_000, level=2.0), -1.0, 1.0)
    clips = {
        "too_long": _tone(16_000, ZOO_LONG_DURATION_S, level=0.3),
        "silent": np.zeros(round(16_000 * ZOO_DURATION_S), dtype=np.float32),
        "clipped": loud_tone,
    }
    return {case: write_wav_16k(target_dir / f"{case}.wav", samples) for case, samples in clips.items()}

"""Fixtures for the Voxtral plugin tests: a tiny offline checkpoint and a few real (espeak-ng) speech clips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
for _path in (_ROOT, _ROOT / "plugins"):  # until the plugins are installed as packages
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

SENTENCES = (
    "the cat sat on the mat",
    "hello world",
    "open the door please",
    "it is raining today",
    "seven green apples",
    "turn left at the corner",
    "we like to sing",
    "good morning everyone",
)


@pytest.fixture(scope="session")
def voxtral_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Voxtral checkpoint folder (model + processor), built once per session."""
    from voxplug_voxtral.tiny import build_tiny_voxtral

    return build_tiny_voxtral(tmp_path_factory.mktemp("voxtral_tiny"))


@pytest.fixture(scope="session")
def voxtral_processor(voxtral_tiny_dir: Path):
    """The tiny checkpoint's VoxtralProcessor, loaded through AutoProcessor."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(voxtral_tiny_dir)


def speak(text: str, folder: Path):
    """Synthesise ``text`` with espeak-ng (22.05 kHz) and return it as a 16 kHz mono float32 array."""
    import numpy as np
    import soundfile
    import soxr

    wav = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
    samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    return soxr.resample(samples.mean(axis=1), rate, 16000).astype(np.float32)


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, object]]:
    """Eight short spoken sentences as ``(text, 16 kHz float32 audio)`` pairs."""
    from voxplug.testing.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("speech")
    return [(text, speak(text, folder)) for text in SENTENCES]

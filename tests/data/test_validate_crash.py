"""``validate --fix`` killed with SIGKILL at every step it takes, then run again: no good row is lost.

A forked child runs the fix and kills itself just before its N-th durable step (a rename, an unlink, an fsync or
a raw write), for every N from the first step to the last: so every point where a kill can land is tried, in a
fixed order, without depending on timing. After each kill the dataset must still hold every good row with its
audio; a second, complete run must then leave exactly the good and repaired rows, each bad row quarantined once
(its line logged once, its file kept once), no orphan and no temporary file.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxplug.data.audio import content_hash
from voxplug.data.store import DatasetStore
from voxplug.data.validate import load_quarantine, validate_dataset

COUNTED = ("replace", "rename", "unlink", "fsync", "write")
"""The ``os`` functions each durable step of a fix goes through; the child dies just before one of them."""


def _fix_and_die_at(path: str, kill_at: int, calls_file: str) -> None:
    """Child process: run ``validate --fix``, killing itself with SIGKILL just before counted call ``kill_at``.

    Not killed (``kill_at`` beyond the last call), it writes how many calls it counted to ``calls_file``.
    """
    calls = itertools.count(1)

    def counted(function):
        def call(*args, **kwargs):
            if next(calls) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)

        return call

    originals = {name: getattr(os, name) for name in COUNTED}
    for name, function in originals.items():
        setattr(os, name, counted(function))
    validate_dataset(Path(path), fix=True, workers=1)
    total = next(calls) - 1
    for name, function in originals.items():
        setattr(os, name, function)
    Path(calls_file).write_text(str(total))
    os._exit(0)


def run_child(path: Path, kill_at: int, calls_file: Path) -> int | None:
    """Run the fix in a forked child; return the exit code (``-SIGKILL`` when it killed itself)."""
    child = multiprocessing.get_context("fork").Process(
        target=_fix_and_die_at, args=(str(path), kill_at, str(calls_file))
    )
    child.start()
    child.join()
    return child.exitcode


def noise(seed: int, seconds: float = 0.5) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(16_000 * seconds)) * 0.1).astype(np.float32)


def write_lines(path: Path, lines: list[bytes]) -> None:
    with path.open("ab") as handle:
        for line in lines:
            handle.write(line + b"\n")


def row_line(row: dict) -> bytes:
    return json.dumps(row).encode()


@pytest.fixture
def pristine(tmp_path: Path, zoo: dict[str, Path]) -> dict:
    """A dataset of good rows, rows --fix repairs, rows it quarantines (with and without files), an orphan file and
    the temporary files of killed writers; plus what the fix must end with."""
    store = DatasetStore.create(tmp_path / "pristine" / "voice", language="en")
    good = [store.add((noise(seed), 16_000), f"good clip {seed}").row for seed in range(6)]
    audio = store.path / "audio"
    for name, source in (("c.wav", "corrupt"), ("t.wav", "truncated"), ("quiet.wav", "silent")):
        shutil.copy(zoo[source], audio / name)
    for name, source in (("r8.wav", "rate_8k"), ("s.wav", "stereo_44k")):
        shutil.copy(zoo[source], audio / name)
    sf.write(str(audio / "e.wav"), noise(100), 16_000, subtype="PCM_16")
    sf.write(str(audio / "left-behind.wav"), noise(101), 16_000, subtype="PCM_16")
    (audio / f".{good[0]['sha256']}.wav.0123456789abcdef.tmp").write_bytes(b"RIFF half a clip")
    (store.path / ".data.jsonl.0123456789abcdef.tmp").write_bytes(b'{"id": "half')
    bad_lines = [
        row_line({"id": "corrupt", "audio_path": "audio/c.wav", "text": "x", "language": "en"}),
        row_line({"id": "truncated", "audio_path": "audio/t.wav", "text": "x", "language": "en"}),
        row_line({"id": "silent", "audio_path": "audio/quiet.wav", "text": "hush", "language": "en"}),
        row_line({"id": "empty", "audio_path": "audio/e.wav", "text": "", "language": "en"}),
        row_line({"id": "missing", "audio_path": "audio/gone.wav", "text": "where", "language": "en"}),
        b'{"id": "malformed", "audio_path": ',
        b'{"id": "latin-1", "audio_path": "audio/x.wav", "text": "caf\xe9 cr\xe8me"}',
    ]
    fixable = [
        {"id": "rate8k", "audio_path": "audio/r8.wav", "text": "tone", "language": "en"},
        {"id": "stereo", "audio_path": "audio/s.wav", "text": " tone  two ", "language": "en"},
    ]
    lines = (store.path / "data.jsonl").read_bytes().splitlines()
    lines[2] = row_line({**good[2], "text": f"  {good[2]['text']} "})  # repaired in place (untidy text)
    (store.path / "data.jsonl").write_bytes(b"")
    write_lines(
        store.path / "data.jsonl", [*lines[:3], bad_lines[0], *lines[3:], *bad_lines[1:], *map(row_line, fixable)]
    )
    kept_files = {name: hashlib.sha256((audio / name).read_bytes()).hexdigest() for name in (
        "c.wav", "t.wav", "quiet.wav", "e.wav", "r8.wav", "s.wav", "left-behind.wav"
    )}  # fmt: skip
    return {
        "path": store.path,
        "good": {row["id"]: row["sha256"] for row in good},
        "fixed": ["rate8k", "stereo"],
        "bad_lines": bad_lines,
        "kept_files": kept_files,
    }


def assert_no_good_row_lost(path: Path, expected: dict) -> None:
    """Whatever state a kill left: every good row is in data.jsonl and its audio file is there."""
    rows = {}
    for line in (path / "data.jsonl").read_bytes().splitlines():
        try:
            row = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        rows.setdefault(row.get("id"), row)
    for row_id in [*expected["good"], *expected["fixed"]]:
        assert row_id in rows, f"row {row_id} left data.jsonl"
        assert (path / rows[row_id]["audio_path"]).is_file(), f"row {row_id}: {rows[row_id]['audio_path']} is gone"


def assert_fixed_exactly_once(path: Path, expected: dict) -> None:
    """The end state of a complete fix, whatever was interrupted before it."""
    rows = [json.loads(line) for line in (path / "data.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(row["id"] for row in rows) == sorted([*expected["good"], *expected["fixed"]])
    for row in rows:
        samples, rate = sf.read(str(path / row["audio_path"]), dtype="float32")
        assert rate == 16_000 and samples.ndim == 1 and content_hash(samples) == row["sha256"]
        if row["id"] in expected["good"]:
            assert row["sha256"] == expected["good"][row["id"]]
    assert {row["text"] for row in rows if row["id"] == "stereo"} == {"tone two"}
    entries = load_quarantine(path)
    logged = sorted(entry["line_sha256"] for entry in entries)
    assert logged == sorted(hashlib.sha256(line).hexdigest() for line in expected["bad_lines"])
    latin = next(entry for entry in entries if "row_base64" in entry)
    assert base64.b64decode(latin["row_base64"]) == expected["bad_lines"][-1]
    quarantined = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in (path / "quarantine" / "audio").iterdir())
    assert quarantined == sorted(expected["kept_files"].values())  # each file kept once, none lost
    for entry in entries:
        if entry["audio_moved_to"] is not None:
            assert (path / entry["audio_moved_to"]).is_file()
    referenced = {Path(row["audio_path"]).name for row in rows}
    assert {p.name for p in (path / "audio").iterdir()} == referenced  # no orphan, no temporary file
    assert not [p for p in path.rglob("*.tmp")]
    report = validate_dataset(path)
    assert report.ok and report.findings == [] and report.usable_rows == len(rows)


def copy_of(pristine: dict, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name / "voice"
    shutil.copytree(pristine["path"], target)
    return target


def test_an_uninterrupted_fix_ends_in_the_expected_state(pristine: dict, tmp_path: Path) -> None:
    path = copy_of(pristine, tmp_path, "whole")
    report = validate_dataset(path)
    assert report.temp_files == 2 and sum(f.code == "leftover_temp_file" for f in report.findings) == 2
    fixed = validate_dataset(path, fix=True)
    assert (fixed.fixed_rows, fixed.quarantined_rows, fixed.removed_temp_files) == (3, 7, 2)
    assert_fixed_exactly_once(path, pristine)
    again = validate_dataset(path, fix=True)
    assert (again.fixed_rows, again.quarantined_rows, again.quarantined_files) == (0, 0, 0)
    assert_fixed_exactly_once(path, pristine)


@pytest.mark.slow
def test_a_fix_killed_at_any_step_loses_nothing_and_quarantines_once(pristine: dict, tmp_path: Path) -> None:
    calls_file = tmp_path / "calls.txt"
    assert run_child(copy_of(pristine, tmp_path, "count"), 0, calls_file) == 0
    total = int(calls_file.read_text())
    assert total > 20  # copies, log lines, the swap, deletions: many points to die at
    for kill_at in range(1, total + 1):
        path = copy_of(pristine, tmp_path, f"kill-{kill_at}")
        assert run_child(path, kill_at, calls_file) == -signal.SIGKILL
        assert_no_good_row_lost(path, pristine)
        if kill_at % 3 == 0:  # killed a second time, at the same step of the rerun
            assert run_child(path, kill_at, calls_file) in (-signal.SIGKILL, 0)
            assert_no_good_row_lost(path, pristine)
        validate_dataset(path, fix=True)
        assert_fixed_exactly_once(path, pristine)
        shutil.rmtree(path.parent)

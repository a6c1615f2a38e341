"""``voxplug quickstart --model voxtral-realtime``: the whole journey with the streaming model, on CPU."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ..training.conftest import run_cli

pytestmark = pytest.mark.slow


def test_the_realtime_quickstart_trains_streams_and_publishes(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    result = run_cli(
        ["quickstart", "--model", "voxtral-realtime", "--out", str(out)], cwd=tmp_path, env={"OMP_NUM_THREADS": "1"}
    )
    report = result.stdout
    match = re.search(r"WER on the 20 training clips: ([0-9.]+) \(base model: ([0-9.]+)\)", report)
    assert match, report
    trained, base = float(match.group(1)), float(match.group(2))
    print(f"\nrealtime quickstart: streaming training-clip WER {trained:.3f} (base {base:.3f})")
    assert trained < 0.1 < base
    info = json.loads((out / "run" / "model" / "voxplug.json").read_text())
    assert info["family"] == "voxtral-realtime" and info["kind"] == "full"
    published = out / "run" / "published"
    assert (published / "model.safetensors").is_file() and (published / "README.md").is_file()
    assert json.loads((published / "tekken.json").read_text())["audio"]["transcription_delay_ms"] == 480
    rows = [json.loads(line) for line in (out / "dataset" / "train.jsonl").read_text().splitlines()]
    assert all(len(row["words"]) == len(row["text"].split()) for row in rows)


def test_an_unknown_quickstart_model_is_refused(tmp_path: Path) -> None:
    result = run_cli(["quickstart", "--model", "parakeet", "--out", str(tmp_path / "qs")], cwd=tmp_path, check=False)
    assert result.returncode == 1 and "runs voxtral or voxtral-realtime, not 'parakeet'" in result.stderr

"""``benchmarks/eval_share.py --tiny --device cpu`` runs real training runs through its command line and writes what
the lead reads on the GPU: stage times, each evaluation split into its loss pass and generation, and the shares."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_run_measures_every_evaluation_and_the_shares(tmp_path: Path) -> None:
    out = tmp_path / "results" / "eval-share.json"
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "eval_share.py"),
        "--tiny",
        "--device",
        "cpu",
        "--runs",
        "20:reference,20:clip:preset",
        "--epochs",
        "2",
        "--out",
        str(out),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads(out.read_text())
    every_epoch, preset = results["runs"]
    budget = results["transcript_tokens"]["max"] + 1
    assert every_epoch["max_new_tokens"] == budget > 1 and preset["max_new_tokens"] is None
    assert (every_epoch["eval_rows"], every_epoch["steps_per_epoch"], every_epoch["global_step"]) == (2, 3, 6)
    # every epoch evaluated without the preset's share; with it, the tiny dataset is evaluated once, at the end
    assert [e["step"] for e in every_epoch["evaluations"]] == [3, 6]
    assert [e["step"] for e in preset["evaluations"]] == [6]
    for entry in results["runs"]:
        stages = entry["stage_seconds"]
        assert stages["training"] > 0 and stages["evaluation"] > 0
        for evaluation in entry["evaluations"]:
            assert evaluation["generation_s"] > 0 and evaluation["loss_pass_s"] > 0
            # each of the three is rounded to the millisecond on its own
            parts = evaluation["loss_pass_s"] + evaluation["generation_s"]
            assert parts == pytest.approx(evaluation["runtime_s"], abs=0.0015)
        # the run's own monitor counts the same evaluations the callback timed
        assert stages["evaluation"] == pytest.approx(sum(e["runtime_s"] for e in entry["evaluations"]), abs=0.01)
        assert 0 < entry["evaluation_share_of_wall"] < entry["evaluation_share_of_loop"] < 1
    spaced = every_epoch["with_preset_spacing"]
    assert spaced["max_eval_share"] == 0.1 and spaced["evaluations"] == 1 and spaced["eval_steps"] == 6
    assert "preset spacing" in finished.stdout

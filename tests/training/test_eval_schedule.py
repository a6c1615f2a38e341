"""Evaluations spaced under ``training.max_eval_share``: the rule, the plan it gives, and a real run that follows it."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from voxplug.config import validate_config
from voxplug.training.arguments import plan_steps
from voxplug.training.eval_schedule import evaluation_cost_rows, spaced_eval_steps


def spacing(steps_per_epoch: int, total_steps: int, rows_per_step: int, eval_rows: int, max_share: float | None):
    return spaced_eval_steps(
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        rows_per_step=rows_per_step,
        eval_rows=eval_rows,
        max_share=max_share,
    )


@pytest.mark.parametrize(
    ("train_rows", "eval_rows", "epochs_apart"),
    [
        (180, 20, 3),  # 200 rows with 10% held out: nine evaluations outweigh the whole run, so only the end
        (900, 100, 3),  # 1,000 rows: one evaluation costs a third of an epoch, so the end only too
        (3800, 200, 2),  # 4,000 rows, the eval split capped at 200: every second epoch (and the last step)
        (9800, 200, 1),  # 10,000 rows: once per epoch, as without a share
    ],
)
def test_evaluations_are_a_whole_number_of_epochs_apart(train_rows: int, eval_rows: int, epochs_apart: int) -> None:
    steps_per_epoch, epochs = train_rows // 4, 3  # 4 rows a step
    found = spacing(steps_per_epoch, epochs * steps_per_epoch, 4, eval_rows, 0.1)
    assert found.steps == epochs_apart * steps_per_epoch
    # the estimate of the evaluations' share of the loop stays under the target, and one epoch fewer would not
    evaluations = epochs // epochs_apart + (epochs % epochs_apart > 0)
    cost = evaluations * evaluation_cost_rows(eval_rows)
    assert cost / (epochs * train_rows + cost) <= 0.1 or epochs_apart == epochs
    if epochs_apart > 1:
        assert evaluation_cost_rows(eval_rows) / ((epochs_apart - 1) * train_rows) > 0.1 / 0.9


def test_the_cost_model_matches_the_measured_evaluations() -> None:
    """On the H100 runs of ``benchmarks/eval_share.py`` (the LoRA preset, 200 and 1,000 rows), one evaluation took
    what the model says, counted in the run's own seconds per training row, within 15%."""
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "eval_share-nvidia-h100-80gb-hbm3.json"
    from voxplug.config import load_config

    recorded = json.loads(results.read_text(encoding="utf-8"))
    rows_per_step = load_config([recorded["preset"]]).training.samples_per_step
    runs = recorded["runs"]
    assert {run["rows"] for run in runs} == {200, 1000}
    for run in runs:
        seconds_per_row = run["stage_seconds"]["training"] / (run["global_step"] * rows_per_step)
        measured = sum(e["runtime_s"] for e in run["evaluations"]) / len(run["evaluations"])
        estimated = evaluation_cost_rows(run["eval_rows"]) * seconds_per_row
        assert abs(estimated / measured - 1) <= 0.15, (run["rows"], estimated, measured)


def test_without_a_share_or_eval_rows_every_epoch_is_evaluated() -> None:
    assert spacing(45, 135, 4, 20, None).steps == 45
    assert spacing(45, 135, 4, 0, 0.1).steps == 45
    assert spacing(45, 135, 4, 20, 0.1).note  # with both, the plan line says why
    assert not spacing(2500, 7500, 4, 200, 0.1).note


def test_a_share_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        spacing(45, 135, 4, 20, 1.5)


def test_rows_per_step_counts_every_process(tmp_path: Path) -> None:
    config = validate_config({"training": {"batch_size": 4, "epochs": 3, "max_eval_share": 0.1}}, base_dir=tmp_path)
    one = plan_steps(config.training, train_rows=1800, world_size=1, eval_rows=100)
    four = plan_steps(config.training, train_rows=1800, world_size=4, eval_rows=100)
    assert one.eval_steps == 2 * one.steps_per_epoch  # the same rows between evaluations, fewer steps
    assert four.eval_steps == 2 * four.steps_per_epoch and four.steps_per_epoch < one.steps_per_epoch


def test_explicit_intervals_win(tmp_path: Path) -> None:
    training = {"batch_size": 4, "epochs": 3, "max_eval_share": 0.1}
    for key, value in (("eval_steps", 7), ("save_steps", 9)):
        config = validate_config({"training": {**training, key: value}}, base_dir=tmp_path)
        plan = plan_steps(config.training, train_rows=180, world_size=1, eval_rows=20)
        assert plan.eval_steps == value and plan.eval_note == ""


def test_the_presets_cap_evaluation_at_a_tenth() -> None:
    from voxplug.config import load_config

    presets = ("voxtral-mini-lora", "voxtral-mini-full", "voxtral-small-lora", "whisper-tiny-en-lora")
    for preset in (*presets, "voxtral-mini-lora-16gb", "voxtral-small-qlora-24gb"):
        assert load_config([preset]).training.max_eval_share == 0.1, preset


@pytest.mark.slow
def test_a_run_evaluates_only_at_the_end_when_epochs_are_short(
    make_config: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """12 clips, 3 held out, 2 epochs: one evaluation outweighs the run's training, so it comes once, at the end."""
    from voxplug.training.run import train

    from .conftest import validated

    config = make_config(training__max_eval_share=0.1, training__output_dir=str(tmp_path / "spaced"))
    with caplog.at_level(logging.INFO, logger="voxplug.training"):
        result = train(validated(config, tmp_path), progress=False)
    state = json.loads((result.run_dir / "trainer_state.json").read_text())
    evaluated = [entry["step"] for entry in state["log_history"] if "eval_wer" in entry]
    assert evaluated == [state["global_step"]] == [10]
    assert any("at the end only: training.max_eval_share 0.1 with 3 eval rows" in r.message for r in caplog.records)
    assert sorted(path.name for path in (result.run_dir / "checkpoints").iterdir()) == ["checkpoint-10"]

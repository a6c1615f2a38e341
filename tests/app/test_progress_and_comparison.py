"""Training progress parsed from a run's output and folder; base versus fine-tuned comparisons."""

from __future__ import annotations

import json
from pathlib import Path

from voxplug.app.comparison import compare
from voxplug.app.progress import TrainingProgress, progress_from_run_dir


def test_progress_lines_are_parsed() -> None:
    progress = TrainingProgress()
    assert not progress.feed("Loading the model")
    assert progress.feed("2026-01-01 INFO voxplug.training: step 3/12  loss 2.5000  learning_rate 5.00e-05")
    assert progress.feed("step 6/12  eval_loss 2.1000  eval_wer 0.4500  eval_cer 0.2000")
    assert (progress.step, progress.max_steps, progress.fraction) == (6, 12, 0.5)
    assert progress.latest("eval_wer") == 0.45 and progress.latest("learning_rate") is None
    assert {row["metric"] for row in progress.rows()} == {"loss", "eval_loss", "eval_wer", "eval_cer"}
    progress.mark_complete()
    assert progress.fraction == 1.0


def test_progress_from_a_finished_run_folder(tmp_path: Path) -> None:
    state = {
        "global_step": 4,
        "max_steps": 4,
        "log_history": [{"step": 2, "loss": 3.0}, {"step": 4, "loss": 2.0, "eval_wer": 0.5}, {"train_runtime": 1}],
    }
    (tmp_path / "trainer_state.json").write_text(json.dumps(state))
    progress = progress_from_run_dir(tmp_path)
    assert progress is not None and progress.fraction == 1.0
    assert [(row["step"], row["metric"]) for row in progress.rows()] == [(2, "loss"), (4, "loss"), (4, "eval_wer")]
    assert progress_from_run_dir(tmp_path / "missing") is None


def row(id_: str, reference: str, hypothesis: str, wer: float) -> dict:
    return {"id": id_, "reference": reference, "hypothesis": hypothesis, "wer": wer, "cer": wer / 2}


def test_compare_matches_utterances_and_sorts_regressions_first() -> None:
    base = [row("a", "the cat sat", "the bat sat", 1 / 3), row("b", "hello there", "hello there", 0.0)]
    tuned = [row("a", "the cat sat", "the cat sat", 0.0), row("b", "hello there", "hello their", 0.5)]
    comparison = compare(base, tuned)
    assert [m[0] for m in comparison.metrics] == ["base", "fine-tuned"]
    assert comparison.metrics[0][1:] == ["20.0%", "4.5%", 2] and comparison.wer == {"base": 0.2, "fine-tuned": 0.2}
    assert [u[0] for u in comparison.utterances] == ["b", "a"]
    assert comparison.utterances[0][6] == 0.5 and comparison.utterances[1][6] == -0.333
    assert "1 utterance(s) improved, 1 got worse" in comparison.summary()
    assert "Evaluate both" in compare([], tuned).summary()

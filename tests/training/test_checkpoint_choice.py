"""Which checkpoint a run keeps when evaluations tie, why it says it kept it, and the losses it reports, on the
evaluation sequences a small personal dataset gives (WER ties are the norm with one or two eval clips)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from transformers import TrainerState

from voxplug.training.outputs import kept_checkpoint_reason, logged_losses
from voxplug.training.transcription_trainer import TranscriptionTrainer


def choose(evaluations: list[dict[str, float]], metric: str = "eval_wer") -> int:
    """Feed ``evaluations`` (one every 10 steps) to the trainer's best-checkpoint rule; return the best step."""
    trainer: Any = TranscriptionTrainer.__new__(TranscriptionTrainer)  # only the rule: no model, no data
    trainer.args = SimpleNamespace(metric_for_best_model=metric, greater_is_better=False, save_strategy="steps")
    trainer.state = TrainerState()
    for index, metrics in enumerate(evaluations, start=1):
        trainer.state.global_step = 10 * index
        trainer.state.log_history.append({**metrics, "step": trainer.state.global_step})
        trainer._determine_best_metric(metrics=metrics, trial=None)
    return trainer.state.best_global_step


@pytest.mark.parametrize(
    ("evaluations", "best"),
    [
        # a WER tie goes to the lower CER: the step 20 (CER 0.98) against step 80 (CER 0.75)
        (
            [
                {"eval_wer": 1.0, "eval_cer": 0.98, "eval_loss": 3.0},
                {"eval_wer": 1.0, "eval_cer": 0.75, "eval_loss": 2.0},
            ],
            20,
        ),
        # the same WER and CER: the lower loss
        (
            [
                {"eval_wer": 0.5, "eval_cer": 0.2, "eval_loss": 2.0},
                {"eval_wer": 0.5, "eval_cer": 0.2, "eval_loss": 1.0},
            ],
            20,
        ),
        # the same on everything: the later step
        (
            [
                {"eval_wer": 0.5, "eval_cer": 0.2, "eval_loss": 1.0},
                {"eval_wer": 0.5, "eval_cer": 0.2, "eval_loss": 1.0},
            ],
            20,
        ),
        # a lower WER still wins, whatever the CER
        (
            [
                {"eval_wer": 0.4, "eval_cer": 0.9, "eval_loss": 3.0},
                {"eval_wer": 0.5, "eval_cer": 0.1, "eval_loss": 1.0},
            ],
            10,
        ),
        # an earlier best stays the best when later ones are worse
        (
            [
                {"eval_wer": 1.0, "eval_cer": 0.9, "eval_loss": 3.0},
                {"eval_wer": 1.0, "eval_cer": 0.5, "eval_loss": 2.0},
                {"eval_wer": 1.0, "eval_cer": 0.7, "eval_loss": 1.0},
            ],
            20,
        ),
    ],
)
def test_ties_go_to_cer_then_loss_then_the_later_step(evaluations: list[dict[str, float]], best: int) -> None:
    assert choose(evaluations) == best


def test_with_cer_chosen_a_tie_goes_to_wer_first() -> None:
    evaluations = [
        {"eval_wer": 0.3, "eval_cer": 0.1, "eval_loss": 1.0},
        {"eval_wer": 0.2, "eval_cer": 0.1, "eval_loss": 2.0},
    ]
    assert choose(evaluations, metric="cer") == 20


def test_the_reason_names_the_tie_and_what_broke_it() -> None:
    history = [
        {"step": 20, "eval_wer": 1.0, "eval_cer": 0.98, "eval_loss": 3.0},
        {"step": 80, "eval_wer": 1.0, "eval_cer": 0.75, "eval_loss": 2.0},
    ]
    assert kept_checkpoint_reason(history, 80, 80, "eval_wer") == (
        "the final model (step 80 of 80) has the lowest WER (1.000), tied with step 20; "
        "kept for its lower CER (0.750 against 0.980)"
    )
    assert (
        kept_checkpoint_reason(history[:1], 20, 30, "eval_wer")
        == "checkpoint-20 (step 20 of 30): the only evaluated model"
    )


def test_losses_cover_the_whole_run_across_a_resume() -> None:
    # logged every 2 steps after the first; a resume at step 4 carries the log over (the Trainer's own train_loss
    # would average steps 5 to 6 only)
    history = [{"step": 1, "loss": 4.0}, {"step": 2, "loss": 3.0}, {"step": 4, "loss": 2.0}, {"step": 6, "loss": 1.0}]
    assert logged_losses(history) == {"final_loss": 1.0, "train_loss": (4.0 + 3.0 + 2 * 2.0 + 2 * 1.0) / 6}

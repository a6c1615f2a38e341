"""How often a run evaluates when ``training.eval_steps`` is unset and ``training.max_eval_share`` caps evaluation.

An evaluation transcribes the eval rows greedily and runs the eval-loss pass over them. Its cost barely shrinks with
the number of rows: decoding takes as many steps for a handful of clips as for a batch of a hundred, so a small
dataset, whose epoch trains in seconds, can spend much of its run evaluating once per epoch. With
``training.max_eval_share`` set, evaluations are spaced a whole number of epochs apart, as few epochs as keep the
estimated evaluation time under that share of the training loop; never more often than once per epoch, and the
final step is always evaluated (transformers' ``Trainer`` evaluates the last step of a step-based schedule).

The estimate counts in training rows, so it holds whatever the hardware: one evaluation costs about as much as
training on :data:`EVAL_FIXED_ROWS` rows (setting up decoding and the decoding steps every batch takes) plus
:data:`EVAL_ROW_COST` rows per eval row (its prompt pass, its share of the decoding steps and its eval-loss pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Training rows that cost as much as one evaluation's fixed part.
EVAL_FIXED_ROWS = 50
#: Training rows that cost as much as evaluating one more eval row (its eval-loss pass, at the small eval batch,
#: costs about a training row by itself).
EVAL_ROW_COST = 2.5


def evaluation_cost_rows(eval_rows: int) -> float:
    """The estimated cost of one evaluation of ``eval_rows`` rows, in training rows."""
    return EVAL_FIXED_ROWS + EVAL_ROW_COST * eval_rows


@dataclass(frozen=True)
class EvalSpacing:
    """Optimizer steps between evaluations, and why, for the run's plan line."""

    steps: int
    note: str = ""


def spaced_eval_steps(
    *, steps_per_epoch: int, total_steps: int, rows_per_step: int, eval_rows: int, max_share: float | None
) -> EvalSpacing:
    """Steps between evaluations: once per epoch, or every few epochs so that evaluating stays under ``max_share``
    of the training loop (see the module docstring); ``max_share`` None or no eval rows keeps once per epoch."""
    if max_share is None or eval_rows <= 0:
        return EvalSpacing(steps_per_epoch)
    if not 0 < max_share < 1:
        raise ValueError(f"max_share must be between 0 and 1, got {max_share}")
    cost = evaluation_cost_rows(eval_rows)
    rows_between = cost * (1 - max_share) / max_share  # training rows after which one evaluation is that share
    epochs = max(1, math.ceil(rows_between / (steps_per_epoch * rows_per_step)))
    if epochs == 1:
        return EvalSpacing(steps_per_epoch)
    share = f"training.max_eval_share {max_share:g}"
    if epochs * steps_per_epoch >= total_steps:
        return EvalSpacing(total_steps, f" (at the end only: {share} with {eval_rows} eval rows)")
    return EvalSpacing(epochs * steps_per_epoch, f" (every {epochs} epochs: {share} with {eval_rows} eval rows)")

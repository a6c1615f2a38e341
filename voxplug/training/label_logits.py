"""The training loss with logits only where a label is: the same number as the model's own loss, far less work.

A causal LM's loss needs the logits at position ``p`` only where ``labels[p + 1] != -100``. In a transcription
batch that is the transcript and EOS: about 10% of the positions (375 ``[AUDIO]`` tokens per 30 s chunk and the
prompt carry no label). Computing the ``(positions, vocab)`` logits everywhere costs 2 x 0.4 GFLOP per position
forward for Voxtral's 131k-word head, and the fp32 copy the loss makes of them is 0.5 MB per position.

The model is asked for hidden states at the labelled positions only, through ``logits_to_keep`` with a boolean
``(batch, sequence)`` mask (transformers' ``slice_logits_to_keep``), and the loss is computed here exactly as
transformers' ``ForCausalLMLoss`` computes it: fp32 cross-entropy, summed and divided by the number of label
tokens of the whole accumulated batch (``num_items_in_batch``) when the Trainer gives one, else the mean.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100


def supports_label_logits(model: Any) -> bool:
    """True for decoder-only models whose forward takes ``logits_to_keep`` (through a PEFT wrapper too)."""
    config = getattr(_unwrapped(model), "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    return forward_takes(model, "logits_to_keep")


def forward_takes(model: Any, argument: str) -> bool:
    """True when ``model``'s forward (under any PEFT wrapper) has a parameter named ``argument``."""
    try:
        return argument in inspect.signature(_unwrapped(model).forward).parameters
    except (TypeError, ValueError):
        return False


def _unwrapped(model: Any) -> Any:
    """The model inside a PEFT wrapper, or ``model``."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def label_logit_mask(labels: torch.Tensor) -> torch.Tensor:
    """``(batch, sequence)`` booleans: True at positions whose next token is a label (not -100)."""
    import torch

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def label_logits_loss(
    outputs: Any, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Cross-entropy of logits computed at :func:`label_logit_mask` positions (``(n, vocab)``, row-major order).

    Matches ``ForCausalLMLoss`` on the full logits: the targets are the shifted labels in the same order.
    """
    import torch.nn.functional as functional

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    shifted = labels[:, 1:]
    targets = shifted[shifted != IGNORE_INDEX]
    logits = logits.reshape(-1, logits.shape[-1]).float()
    if num_items_in_batch is None:
        return functional.cross_entropy(logits, targets, reduction="mean")
    loss = functional.cross_entropy(logits, targets, reduction="sum")
    if hasattr(num_items_in_batch, "to"):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch

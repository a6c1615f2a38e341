"""The training loss with logits only where a label is: the same number as the model's own loss, far less work.

A causal LM's loss needs the logits at position ``p`` only where ``labels[p + 1] != -100``. In a transcription
batch that is the transcript and EOS: about 10% of the positions (375 ``[AUDIO]`` tokens per 30 s chunk and the
prompt carry no label). Computing the ``(positions, vocab)`` logits everywhere costs 2 x 0.4 GFLOP per position
forward for Voxtral's 131k-word head, and the fp32 copy the loss makes of them is 0.5 MB per position.

:func:`label_positions` lists, per row, the positions whose next token is a label, padded to the batch's longest
list (a padding slot points at the last position and its target is -100). The model is asked for hidden states at
those positions only, through ``logits_to_keep`` as a ``(batch, positions)`` integer tensor (transformers'
``slice_logits_to_keep``), and :func:`label_logits_loss` computes the loss exactly as transformers'
``ForCausalLMLoss`` does: fp32 cross-entropy, summed and divided by the number of label tokens of the whole
accumulated batch (``num_items_in_batch``) when the Trainer gives one, else the mean.

The positions are computed on the CPU, in the data loader (:class:`LabelPositionsCollator`): every shape the
GPU then sees is known to the host, so a training step has no host-device synchronisation for them (a boolean
mask would make PyTorch wait for the GPU twice per step, to count the kept positions and the targets).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100
#: Batch keys :class:`LabelPositionsCollator` adds: the model's ``logits_to_keep`` and the aligned targets.
POSITIONS_KEY = "logits_to_keep"
TARGETS_KEY = "label_targets"


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


def label_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positions, targets)``, both ``(batch, n)``: where each row's next token is a label, and that label.

    ``n`` is the most labels any row has (at least 1); shorter rows are padded with the last position and target
    -100, which the loss ignores. Call it on CPU tensors: on a GPU, sizing ``n`` waits for the device.
    """
    import torch

    if labels.shape[1] < 2:  # no position has a next token
        empty = torch.zeros((labels.shape[0], 1), dtype=torch.long, device=labels.device)
        return empty, torch.full_like(empty, IGNORE_INDEX)
    shifted = labels[:, 1:]
    keep = shifted != IGNORE_INDEX
    counts = keep.sum(dim=1)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    last = labels.shape[1] - 1
    # a stable sort puts each row's kept positions first, in order
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :width]
    slots = torch.arange(width, device=labels.device).expand(labels.shape[0], width)
    real = slots < counts[:, None]
    positions = torch.where(real, order, torch.full_like(order, last))
    targets = torch.where(real, shifted.gather(1, order), torch.full_like(order, IGNORE_INDEX))
    return positions, targets


def label_logits_loss(
    outputs: Any, targets: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Cross-entropy of logits computed at :func:`label_positions` (``(batch, n, vocab)``) against its targets.

    Matches ``ForCausalLMLoss`` on the full logits.
    """
    import torch.nn.functional as functional

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    logits = logits.reshape(-1, logits.shape[-1]).float()
    targets = targets.reshape(-1).to(logits.device)
    if num_items_in_batch is None:
        return functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="mean")
    loss = functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    if hasattr(num_items_in_batch, "to"):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch


class LabelPositionsCollator:
    """Wraps a collator: adds :func:`label_positions` of its ``labels`` as ``logits_to_keep`` and ``label_targets``.

    Runs where the collator runs (data-loader workers, on the CPU). A plain class, so it pickles to workers.
    """

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, examples: list[Any]) -> dict[str, Any]:
        batch = self.collator(examples)
        labels = batch.get("labels")
        if labels is not None and hasattr(labels, "device") and labels.device.type == "cpu":
            batch[POSITIONS_KEY], batch[TARGETS_KEY] = label_positions(labels)
        return batch

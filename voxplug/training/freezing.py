"""Freezing part of a model for real: no trainable weights and no autograd graph through it.

``requires_grad = False`` alone stops weight updates but not the graph: if anything upstream needs gradients
(LoRA inside the module, a trainable input), PyTorch still records every activation of the module and runs its
backward pass. :func:`freeze_without_grad` also runs the module's forward under ``torch.no_grad()``, so its
output carries no ``grad_fn`` and costs forward compute only (one third of what training it would).
"""

from __future__ import annotations

import functools
from typing import Any

_FROZEN_MARK = "_voxplug_frozen_without_grad"


def freeze_parameters(module: Any) -> int:
    """Set ``requires_grad = False`` on every parameter of ``module``; return how many elements were frozen."""
    frozen = 0
    for parameter in module.parameters():
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    return frozen


def freeze_without_grad(module: Any) -> int:
    """Freeze ``module``'s parameters and run its forward without autograd; idempotent.

    Returns the number of frozen parameter elements. The module's ``forward`` is wrapped on the instance, so
    hooks that libraries add later (PEFT, DeepSpeed, gradient checkpointing) keep working.
    """
    import torch

    frozen = freeze_parameters(module)
    if not getattr(module, _FROZEN_MARK, False):
        original_forward = module.forward

        @functools.wraps(original_forward)
        def forward_without_grad(*args: Any, **kwargs: Any) -> Any:
            with torch.no_grad():
                return original_forward(*args, **kwargs)

        module.forward = forward_without_grad
        setattr(module, _FROZEN_MARK, True)
    return frozen


def is_frozen_without_grad(module: Any) -> bool:
    """True when :func:`freeze_without_grad` was applied to ``module``."""
    return bool(getattr(module, _FROZEN_MARK, False))


def count_parameters(model: Any) -> dict[str, int]:
    """``{"trainable": n, "total": n}`` parameter elements of ``model``."""
    total = trainable = 0
    for parameter in model.parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return {"trainable": trainable, "total": total}

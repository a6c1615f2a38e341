"""Freezing part of a model for real: no trainable weights and no autograd graph through it.

``requires_grad = False`` alone stops weight updates but not the graph: if anything upstream needs gradients
(LoRA inside the module, a trainable input), PyTorch still records every activation of the module and runs its
backward pass. :func:`freeze_without_grad` also runs the module's forward under ``torch.no_grad()``, so its
output carries no ``grad_fn`` and costs forward compute only (one third of what training it would).
"""

from __future__ import annotations

from types import MethodType
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
    hooks that libraries add later (PEFT, DeepSpeed, gradient checkpointing) keep working; both the wrapper and the
    forward it wraps are bound methods, so a ``copy.deepcopy`` of the model runs the copy's own weights.
    """
    frozen = freeze_parameters(module)
    if not getattr(module, _FROZEN_MARK, False):
        module._forward_with_grad = module.forward
        module.forward = MethodType(_forward_without_grad, module)
        setattr(module, _FROZEN_MARK, True)
    return frozen


def _forward_without_grad(self: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    with torch.no_grad():
        return self._forward_with_grad(*args, **kwargs)


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

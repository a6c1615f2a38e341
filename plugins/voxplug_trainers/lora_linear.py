"""One autograd node per LoRA layer: PEFT's adapter arithmetic with fewer kernels and less Python in each step.

PEFT computes a LoRA linear layer as ``base(x) + lora_B(lora_A(dropout(x))) * scaling`` from modules. Under
autocast, over a bf16 base with fp32 adapters, that is per layer and step three linear calls, two weight casts, a
multiply and an add forward, and about as many autograd nodes backward, each with its Python and its kernel
launch. Eager LoRA training of Voxtral on a GPU is bound by that host work, not by the GPU (benchmarks/NOTES.md):
the GPU idles while the host queues ~2,000 small kernels a step.

:class:`LoraLinearFunction` does the same arithmetic as one autograd node: forward ``x W^T``, ``h = x A^T`` and
``out += s h B^T`` (an ``addmm_``); backward the input gradient ``g W + s (g B) A`` and the adapters' gradients,
only those that are needed. Same math, same parameters (PEFT's modules, saved and loaded as PEFT's), so nothing
outside the step changes. :func:`use_one_node_lora` puts it on every plain PEFT ``lora.Linear`` of a model; the
layer falls back to PEFT's own forward wherever it does not apply (no gradient, adapters merged or disabled, a
base layer that trains, a variant such as DoRA, dropout, several adapters, or dtypes that only PEFT's casts
reconcile).

Not for ZeRO-3 (it reads the weights without calling the modules that gather them) nor under ``torch.compile``
(which fuses PEFT's forward itself); the ``lora`` trainer installs it only in eager runs without DeepSpeed.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch

ADAPTER = "default"


class LoraLinearFunction(torch.autograd.Function):
    """``x W^T + b + s (x A^T) B^T`` in ``dtype``, with its gradients, as one autograd node (see the module doc)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scaling: float,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(dtype)
        w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
        out = torch.mm(flat, w.t()) if bias is None else torch.addmm(bias.to(dtype), flat, w.t())
        h = torch.mm(flat, a.t())
        out.addmm_(h, b.t(), alpha=scaling)
        ctx.save_for_backward(flat, h, w, a, b)
        ctx.scaling = scaling
        ctx.x_meta = (x.shape, x.dtype)
        ctx.adapter_dtypes = (lora_a.dtype, lora_b.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        flat, h, w, a, b = ctx.saved_tensors
        grad = grad_out.reshape(-1, grad_out.shape[-1]).to(w.dtype)
        needs_x, _, _, needs_a, needs_b = ctx.needs_input_grad[:5]
        grad_x = grad_a = grad_b = None
        if needs_x or needs_a:
            grad_h = torch.mm(grad, b).mul_(ctx.scaling)  # s g B: (tokens, r)
            if needs_x:
                shape, x_dtype = ctx.x_meta
                grad_x = torch.mm(grad, w).addmm_(grad_h, a).view(shape).to(x_dtype)
            if needs_a:
                grad_a = torch.mm(grad_h.t(), flat).to(ctx.adapter_dtypes[0])
        if needs_b:
            grad_b = torch.mm(grad.t(), h).mul_(ctx.scaling).to(ctx.adapter_dtypes[1])
        return grad_x, None, None, grad_a, grad_b, None, None


def one_node_applies(layer: Any) -> bool:
    """Whether ``layer`` is a plain PEFT LoRA linear layer this module's forward computes exactly as PEFT does:
    one adapter named ``default``, no dropout, no LoRA variant (DoRA...), an ``nn.Linear`` base, no fan-in-fan-out
    weight layout, and no LoRA bias."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    return (
        type(layer) is LoraLinear
        and type(layer.base_layer) is torch.nn.Linear
        and set(layer.lora_A.keys()) == {ADAPTER}
        and not layer.lora_variant
        and not layer.fan_in_fan_out
        and type(layer.lora_dropout[ADAPTER]) is torch.nn.Identity
        and not getattr(layer, "lora_bias", {}).get(ADAPTER, False)
    )


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor, lora_a: torch.Tensor) -> torch.dtype | None:
    """The dtype PEFT's forward computes in here: autocast's, or the one every tensor already has; else None."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    if x.dtype == weight.dtype == lora_a.dtype:
        return x.dtype
    return None


def decide_peft_input_cast(layer: Any, x: torch.Tensor) -> None:
    """Before PEFT's forward of ``layer`` on ``x``: cast the input to the adapters' dtype only without autocast
    (under autocast the cast to fp32 would be cast straight back to bf16 for the matmul)."""
    layer.cast_input_dtype_enabled = not torch.is_autocast_enabled(x.device.type)


def _one_node_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    base = self.base_layer
    weight, bias, lora_a = base.weight, base.bias, self.lora_A[ADAPTER].weight
    dtype = None
    if not (args or kwargs or self.disable_adapters or self.merged_adapters) and torch.is_grad_enabled():
        frozen_base = not weight.requires_grad and (bias is None or not bias.requires_grad)
        if frozen_base and self.active_adapters == [ADAPTER]:
            dtype = _compute_dtype(x, weight, lora_a)
    if dtype is None:
        decide_peft_input_cast(self, x)
        return self._peft_forward(x, *args, **kwargs)
    lora_b = self.lora_B[ADAPTER].weight
    return LoraLinearFunction.apply(x, weight, bias, lora_a, lora_b, self.scaling[ADAPTER], dtype)


def use_one_node_lora(model: Any) -> int:
    """Give every LoRA layer of ``model`` that :func:`one_node_applies` to the one-node forward; return how many.

    Per instance: the layer's class, its parameters and ``state_dict`` stay PEFT's. ``restore_peft_forward``
    undoes it."""
    count = 0
    for module in model.modules():
        if "_peft_forward" not in module.__dict__ and one_node_applies(module):
            module._peft_forward = module.forward
            module.forward = MethodType(_one_node_forward, module)
            count += 1
    return count


def restore_peft_forward(model: Any) -> int:
    """Give every layer :func:`use_one_node_lora` changed its PEFT forward back; return how many."""
    count = 0
    for module in model.modules():
        if "_peft_forward" in module.__dict__:
            del module.forward, module._peft_forward
            count += 1
    return count

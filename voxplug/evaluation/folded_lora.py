"""PEFT LoRA layers as a decoding step computes them: fewer kernels, the adapters copied once per transcription.

A decoding step replays every adapted layer at every token, and PEFT's forward of one (over a bf16 base with fp32
adapters, under autocast) is the base matmul plus six kernels: both adapter weights cast, two matmuls, the scaling
and the add. :class:`FoldedLora` computes the layers that read one input (a block's q/k/v projections, or its
gate/up projections) as ``x W_i^T + s_i (x A_i^T) B_i^T``: one down-projection for all their adapters, then per
layer the base matmul and one ``addmm_``. It is PEFT's arithmetic in PEFT's dtype, rounded once where PEFT rounds
the adapter's product, its scaling and the add apart (in bf16, ties between tokens may flip).

Without autocast, a model loaded for inference (``PeftModel.from_pretrained`` over a bf16 base) keeps its adapters
in float32, and PEFT computes them in float32 and adds them to the bf16 base output in float32 before rounding back.
The fold does the same: the adapters in float32, the sum rounded once to the base's dtype.

A fold holds copies of the adapters made when :func:`fold_lora` is called: fold again whenever they may have
changed (a decoder folds once per transcription, and training changes the adapters between evaluations). A folded
layer is not called, so its forward hooks do not run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class FoldedLora:
    """LoRA layers on one input; calling it on ``x`` gives each layer's output, in order."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor | None, ...]
    down: torch.Tensor  # every adapter's A, stacked along rows, in ``dtype``
    ups: tuple[torch.Tensor, ...]  # each adapter's B, in ``dtype``
    ranks: tuple[int, ...]
    scalings: tuple[float, ...]
    dtype: torch.dtype  # the base matmuls' and the outputs'
    adapter_dtype: torch.dtype  # ``down``'s and ``ups``': ``dtype``, or float32 where PEFT computes them in it

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        import torch

        flat = x.reshape(-1, x.shape[-1]).to(self.dtype)
        wide = self.adapter_dtype != self.dtype
        low = torch.mm(flat.to(self.adapter_dtype) if wide else flat, self.down.t())
        parts = low.split_with_sizes(list(self.ranks), dim=1) if len(self.ranks) > 1 else (low,)
        outs = []
        for weight, bias, up, part, scaling in zip(
            self.weights, self.biases, self.ups, parts, self.scalings, strict=True
        ):
            out = torch.mm(flat, weight.t()) if bias is None else torch.addmm(bias, flat, weight.t())
            if wide:
                out = torch.addmm(out.to(self.adapter_dtype), part, up.t(), alpha=scaling).to(self.dtype)
            else:
                out.addmm_(part, up.t(), alpha=scaling)
            outs.append(out.view(*x.shape[:-1], out.shape[-1]))
        return tuple(outs)


def compute_dtype(device: torch.device, input_dtype: torch.dtype) -> torch.dtype:
    """The dtype a layer's matmuls run in on ``device`` for an input of ``input_dtype``: autocast's where it is on."""
    import torch

    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return input_dtype


def fold_lora(layers: Sequence[Any], dtype: torch.dtype) -> FoldedLora | None:
    """``layers`` (all called on one input) folded to compute in ``dtype``, or None where PEFT's forward must run.

    Every layer must be a plain PEFT LoRA linear layer: one active adapter, not merged or disabled, no dropout in
    effect, no LoRA variant (DoRA...) and no LoRA bias. Its base weight must already be in ``dtype``: casting it at
    every call would cost what folding saves. Under autocast the adapters compute in ``dtype``; without it PEFT
    computes them in their own dtype, which must then be ``dtype`` or float32, and the same for every layer."""
    import torch

    if not layers or not all(_plain_lora(layer) for layer in layers):
        return None
    weights, biases, downs, ups, scalings = [], [], [], [], []
    adapter_dtypes = set()
    for layer in layers:
        (name,) = layer.active_adapters
        base = layer.base_layer
        down, up = layer.lora_A[name].weight, layer.lora_B[name].weight
        if base.weight.dtype != dtype or (base.bias is not None and base.bias.dtype != dtype):
            return None
        autocast = torch.is_autocast_enabled(base.weight.device.type)
        adapter_dtypes |= {dtype} if autocast else {down.dtype, up.dtype}
        weights.append(base.weight)
        biases.append(base.bias)
        downs.append(down)
        ups.append(up)
        scalings.append(float(layer.scaling[name]))
    if len(adapter_dtypes) != 1 or adapter_dtypes - {dtype, torch.float32}:
        return None
    (adapter_dtype,) = adapter_dtypes
    return FoldedLora(
        weights=tuple(weights),
        biases=tuple(biases),
        down=torch.cat([down.detach().to(adapter_dtype) for down in downs]),
        ups=tuple(up.detach().to(adapter_dtype, copy=True) for up in ups),
        ranks=tuple(down.shape[0] for down in downs),
        scalings=tuple(scalings),
        dtype=dtype,
        adapter_dtype=adapter_dtype,
    )


def _plain_lora(layer: Any) -> bool:
    import torch

    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # peft is optional for inference
        return False
    if type(layer) is not LoraLinear or type(layer.base_layer) is not torch.nn.Linear:
        return False
    adapters = layer.active_adapters
    if len(adapters) != 1 or layer.disable_adapters or layer.merged_adapters or layer.fan_in_fan_out:
        return False
    (name,) = adapters
    if name not in layer.lora_A or name in getattr(layer, "lora_variant", {}):
        return False
    if getattr(layer, "lora_bias", {}).get(name, False):
        return False
    dropout = layer.lora_dropout[name]
    return type(dropout) is torch.nn.Identity or not dropout.training

"""PEFT LoRA layers as a decoding step computes them: a few matmuls, the adapters cast once per transcription.

Under autocast, PEFT's forward of a LoRA linear layer over a bf16 base with fp32 adapters is seven or eight kernels
(the base matmul, the input cast to the adapters' dtype and back, both adapter weights cast, two matmuls, the
scaling and the add), and a decoding step replays them for every adapted layer at every token. :class:`FoldedLora`
computes the layers that read one input (a Llama block's q/k/v projections, or its gate/up projections) as
``x W_i^T + s_i (x A_i^T) B_i^T``: every adapter's down-projection in one matmul, then per layer the base matmul
and one ``addmm_``. It is the same arithmetic as PEFT's in the same dtype; only where the scaling is applied and
the roundings of the last add differ.

The adapters are cast when :func:`fold_lora` is called, so the caller folds again whenever they may have changed
(a decoder folds once per transcription; training changes the adapters only between evaluations).
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
    dtype: torch.dtype

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        import torch

        flat = x.reshape(-1, x.shape[-1]).to(self.dtype)
        low = torch.mm(flat, self.down.t())
        parts = low.split_with_sizes(list(self.ranks), dim=1) if len(self.ranks) > 1 else (low,)
        outs = []
        for weight, bias, up, part, scaling in zip(
            self.weights, self.biases, self.ups, parts, self.scalings, strict=True
        ):
            out = torch.mm(flat, weight.t()) if bias is None else torch.addmm(bias, flat, weight.t())
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
    """``layers`` (called on one input) folded to compute in ``dtype``, or None where PEFT's forward must run: any
    layer that is not a plain, active, unmerged PEFT LoRA linear layer with one adapter, no dropout in effect, no
    LoRA variant (DoRA...) or LoRA bias, and a base weight already in ``dtype`` (casting a base weight per call
    would cost what folding saves). Without autocast the adapters must also be in ``dtype``, as PEFT would compute
    them in their own dtype otherwise."""
    import torch

    if not layers or not all(_plain_lora(layer) for layer in layers):
        return None
    weights, biases, downs, ups, scalings = [], [], [], [], []
    for layer in layers:
        (name,) = layer.active_adapters
        base = layer.base_layer
        down, up = layer.lora_A[name].weight, layer.lora_B[name].weight
        if base.weight.dtype != dtype or (base.bias is not None and base.bias.dtype != dtype):
            return None
        if not torch.is_autocast_enabled(base.weight.device.type) and (down.dtype != dtype or up.dtype != dtype):
            return None
        weights.append(base.weight)
        biases.append(base.bias)
        downs.append(down.detach().to(dtype))
        ups.append(up.detach().to(dtype))
        scalings.append(float(layer.scaling[name]))
    return FoldedLora(
        weights=tuple(weights),
        biases=tuple(biases),
        down=torch.cat(downs),
        ups=tuple(ups),
        ranks=tuple(down.shape[0] for down in downs),
        scalings=tuple(scalings),
        dtype=dtype,
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

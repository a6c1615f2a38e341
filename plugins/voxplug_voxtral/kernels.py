"""Fused GPU kernels for training Voxtral's language model (a Llama): RMSNorm from PyTorch, SwiGLU and RoPE from
Liger.

Liger's kernels (RMSNorm, SwiGLU, RoPE) lowered LoRA's peak on the lent H100 from 27.5-31.1 GiB to 24.4 GiB at
micro-batch 8 (benchmarks/NOTES.md). Eager LoRA training is bound by the host, though, and a forward and backward
of Liger's Triton RMSNorm cost the lent H200 machine's host 471-792 us, transformers' own seven-op RMSNorm 565-657
us and ``torch.nn.functional.rms_norm`` (one fused ATen kernel each way) 120-171 us (``benchmarks/
kernel_host_cost.py``, three calls): 18-41 ms a step over Voxtral-Mini's 61 norms, +5% samples/s for LoRA in an
interleaved run; full fine-tuning, GPU-bound, keeps the same step time. So the norms are PyTorch's, the rest
Liger's. The loss moves by bf16 rounding only.

The RMSNorm swap needs only PyTorch; the others need ``liger-kernel`` (``pip install voxplug[gpu]``) and a CUDA
device. The norm and MLP modules of the given model are patched in place; Liger's rotary embedding replaces
transformers' Llama ``apply_rotary_pos_emb`` for the whole process (the same function, fused), the only global
change kept.
"""

from __future__ import annotations

import logging
from types import MethodType
from typing import Any

log = logging.getLogger("voxplug.training")

FUSED = ["rms_norm", "swiglu", "rope"]


def fuse_language_model_kernels(
    model: Any, kernels: tuple[str, ...] = tuple(FUSED), *, rms_norm: str = "torch"
) -> list[str]:
    """Fuse ``kernels`` (from :data:`FUSED`) into ``model``'s Llama language model; return what was fused.

    ``rms_norm`` says whose RMSNorm: ``"torch"`` (:func:`use_torch_rms_norm`) or ``"liger"``. Liger's kernels are
    skipped, with a log line, when liger-kernel is not installed."""
    language_model = model.model.language_model
    if getattr(language_model.config, "model_type", None) != "llama":
        return []
    fused = []
    if "rms_norm" in kernels and rms_norm == "torch":
        use_torch_rms_norm(model)
        fused.append("rms_norm")
    liger = {name for name in kernels if name != "rms_norm" or rms_norm == "liger"}
    if liger:
        fused += _fuse_liger(language_model, liger)
    fused = [name for name in FUSED if name in fused]
    log.info("fused kernels on the language model: %s", ", ".join(fused) or "none")
    return fused


def _fuse_liger(language_model: Any, kernels: set[str]) -> list[str]:
    try:
        from liger_kernel.transformers import apply_liger_kernel_to_llama
    except ImportError:
        log.info("liger-kernel is not installed: %s run unfused (pip install 'voxplug[gpu]')", ", ".join(kernels))
        return []
    from transformers.models.llama import modeling_llama

    classes = {name: getattr(modeling_llama, name) for name in ("LlamaRMSNorm", "LlamaMLP")}
    apply_liger_kernel_to_llama(
        rope="rope" in kernels,
        rms_norm="rms_norm" in kernels,
        swiglu="swiglu" in kernels,
        cross_entropy=False,  # the loss is voxplug's (logits at label positions only)
        fused_linear_cross_entropy=False,
        model=language_model,
    )
    for name, original in classes.items():  # models built later in this process stay unpatched
        setattr(modeling_llama, name, original)
    return sorted(kernels)


def use_torch_rms_norm(model: Any) -> int:
    """Compute each RMSNorm of ``model``'s Llama language model with ``torch.nn.functional.rms_norm``: one ATen
    call forward and one backward (fused CUDA kernels), where transformers' forward runs seven ops. The weight
    multiplies before the one cast back to the input's dtype (Llama casts first): a bf16 rounding apart. Returns
    how many norms changed."""
    import torch
    from transformers.models.llama import modeling_llama

    def forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.rms_norm(hidden_states, self.weight.shape, self.weight, self.variance_epsilon)

    norms = [m for m in model.model.language_model.modules() if type(m) is modeling_llama.LlamaRMSNorm]
    for norm in norms:
        norm.forward = MethodType(forward, norm)
    return len(norms)

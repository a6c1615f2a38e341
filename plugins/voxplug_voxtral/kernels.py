"""Fused GPU kernels for training Voxtral's language model (a Llama): Liger's RMSNorm, SwiGLU and RoPE.

On the lent H100 (benchmarks/NOTES.md), LoRA training of Voxtral-Mini-3B at micro-batch 8 peaked at 24.4 GiB
with these kernels instead of 27.5-31.1 GiB; in an interleaved A/B its speed moved less than the drift of the
run (+-6%). The loss moved by 3e-5 relative (bf16 rounding).

Needs ``liger-kernel`` (``pip install voxplug[gpu]``) and a CUDA device. The normalization and MLP modules of
the given model are patched in place; Liger's rotary embedding replaces transformers' Llama
``apply_rotary_pos_emb`` for the whole process (the same function, fused), the only global change kept.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("voxplug.training")

FUSED = ["rms_norm", "swiglu", "rope"]


def fuse_language_model_kernels(model: Any) -> list[str]:
    """Patch ``model``'s Llama language model with Liger kernels; return what was fused ([] when unavailable)."""
    language_model = model.model.language_model
    if getattr(language_model.config, "model_type", None) != "llama":
        return []
    try:
        from liger_kernel.transformers import apply_liger_kernel_to_llama
    except ImportError:
        log.info("liger-kernel is not installed: training without fused kernels (pip install 'voxplug[gpu]')")
        return []
    from transformers.models.llama import modeling_llama

    classes = {name: getattr(modeling_llama, name) for name in ("LlamaRMSNorm", "LlamaMLP")}
    apply_liger_kernel_to_llama(
        rope=True,
        rms_norm=True,
        swiglu=True,
        cross_entropy=False,  # the loss is voxplug's (logits at label positions only)
        fused_linear_cross_entropy=False,
        model=language_model,
    )
    for name, original in classes.items():  # models built later in this process stay unpatched
        setattr(modeling_llama, name, original)
    log.info("fused kernels on the language model: %s", ", ".join(FUSED))
    return list(FUSED)

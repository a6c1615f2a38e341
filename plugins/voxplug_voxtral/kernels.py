"""Fused GPU kernels for training Voxtral's language model (a Llama): RMSNorm from PyTorch; SwiGLU and RoPE as
lean autograd functions of a few ATen kernels each.

Eager LoRA training is bound by the host, so each kernel here is chosen for what it costs the host per call, not
only the GPU: the norms are PyTorch's single fused ATen kernel each way, and :class:`SiluMul` and
:class:`RotaryEmbedding` do SwiGLU's and RoPE's arithmetic in a few ATen kernels, keeping for the backward only
the MLP's inputs, not ``silu(gate)``. Results match the unfused model up to bf16 rounding. The measurements behind
these choices are in ``benchmarks/NOTES.md`` (``benchmarks/kernel_host_cost.py``).

Everything is set on the given model's own modules (a per-instance ``forward``): their classes, transformers'
module functions and every other model in the process stay as they were.
"""

from __future__ import annotations

import logging
from types import CellType, FunctionType, MethodType
from typing import Any

import torch
from transformers.models.llama import modeling_llama

_llama_rotary_pos_emb = modeling_llama.apply_rotary_pos_emb  # transformers' own

log = logging.getLogger("voxplug.training")

FUSED = ["rms_norm", "swiglu", "rope"]


def fuse_language_model_kernels(model: Any, kernels: tuple[str, ...] = tuple(FUSED)) -> list[str]:
    """Fuse ``kernels`` (from :data:`FUSED`) into ``model``'s Llama language model; return what was fused."""
    language_model = model.model.language_model
    if getattr(language_model.config, "model_type", None) != "llama":
        return []
    unknown = set(kernels).difference(FUSED)
    if unknown:
        raise ValueError(f"unknown kernels: {sorted(unknown)} (known: {', '.join(FUSED)})")
    use = {"rms_norm": use_torch_rms_norm, "swiglu": use_torch_swiglu, "rope": use_torch_rope}
    fused = [name for name in FUSED if name in kernels and use[name](model)]
    log.info("fused kernels on the language model: %s", ", ".join(fused) or "none")
    return fused


def use_torch_rms_norm(model: Any) -> int:
    """Compute each RMSNorm of ``model``'s Llama language model with ``torch.nn.functional.rms_norm``: one ATen
    call forward and one backward (fused CUDA kernels), where transformers' forward runs seven ops. The weight
    multiplies before the one cast back to the input's dtype (Llama casts first): a bf16 rounding apart. Returns
    how many norms changed."""
    norms = [m for m in model.model.language_model.modules() if _is_llama_rms_norm(m)]
    return _replace_forward(norms, _rms_norm_forward)


def _is_llama_rms_norm(module: Any) -> bool:
    """Whether ``module`` is a Llama RMSNorm, whose forward :func:`_rms_norm_forward` computes."""
    return type(module) is modeling_llama.LlamaRMSNorm


def _rms_norm_forward(self: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.rms_norm(hidden_states, self.weight.shape, self.weight, self.variance_epsilon)


def fused_rms_norm(norm: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    """``norm(hidden_states)``, computed as :func:`use_torch_rms_norm` computes it where ``norm`` is a Llama
    RMSNorm (another module runs its own forward)."""
    if _is_llama_rms_norm(norm):
        return _rms_norm_forward(norm, hidden_states)
    return norm(hidden_states)


def _replace_forward(modules: list[Any], forward: Any) -> int:
    """Give each of ``modules`` ``forward`` as its own (per instance: its class stays); return how many."""
    for module in modules:
        module.forward = MethodType(forward, module)
    return len(modules)


class SiluMul(torch.autograd.Function):
    """``silu(gate) * up`` (Llama's SwiGLU), keeping only ``gate`` and ``up`` for the backward, which recomputes
    ``silu(gate)``: two kernels forward and four backward, the eager math, and Liger's memory."""

    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(gate, up)
        return torch.nn.functional.silu(gate).mul_(up)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        gate, up = ctx.saved_tensors
        grad_up = grad * torch.nn.functional.silu(gate)
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate)
        return grad_gate, grad_up


def _rotate(
    x: torch.Tensor, a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor], signs: tuple[int, int]
) -> torch.Tensor:
    """``[x1 a1 + s1 x2 b1, x2 a2 + s2 x1 b2]`` over the two halves of ``x``'s last dimension, in the dtype that
    ``x * a`` has (fp32 for a bf16 ``x`` under autocast over an fp32 model, as transformers' formula): four kernels."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    out = torch.empty_like(x, dtype=torch.result_type(x, a[0]))
    out1, out2 = out[..., :half], out[..., half:]
    torch.mul(x1, a[0], out=out1).addcmul_(x2, b[0], value=signs[0])
    torch.mul(x2, a[1], out=out2).addcmul_(x1, b[1], value=signs[1])
    return out


class RotaryEmbedding(torch.autograd.Function):
    """Llama's rotary embedding of q and k (``x cos + rotate_half(x) sin``) as one autograd node: per tensor, two
    multiplies and two ``addcmul_`` on the halves forward, and the inverse rotation backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        half = cos.shape[-1] // 2
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (batch, 1, positions, head_dim): over every head
        ctx.save_for_backward(cos, sin)
        ctx.set_materialize_grads(False)
        ctx.dtypes = q.dtype, k.dtype
        # out1 = x1 c1 - x2 s1, out2 = x2 c2 + x1 s2
        halves = (cos[..., :half], cos[..., half:]), (sin[..., :half], sin[..., half:])
        return _rotate(q, *halves, (-1, 1)), _rotate(k, *halves, (-1, 1))

    @staticmethod
    def backward(ctx: Any, grad_q: torch.Tensor | None, grad_k: torch.Tensor | None) -> tuple[Any, ...]:  # type: ignore[override]
        cos, sin = ctx.saved_tensors
        half = cos.shape[-1] // 2
        # the transpose: grad1 = g1 c1 + g2 s2, grad2 = g2 c2 - g1 s1
        halves = (cos[..., :half], cos[..., half:]), (sin[..., half:], sin[..., :half])
        grads = [
            None if g is None else _rotate(g, *halves, (1, -1)).to(dtype)
            for g, dtype in zip((grad_q, grad_k), ctx.dtypes, strict=True)
        ]
        return grads[0], grads[1], None, None


def rotary_pos_emb(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' Llama ``apply_rotary_pos_emb``, computed by :class:`RotaryEmbedding` (heads on dimension 1)."""
    if unsqueeze_dim != 1 or cos.dim() != 3:
        return _llama_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim)
    return RotaryEmbedding.apply(q, k, cos, sin)


def use_torch_swiglu(model: Any) -> int:
    """Compute each SiLU-gated MLP of ``model``'s Llama language model with :class:`SiluMul`; return how many."""
    mlps = [m for m in model.model.language_model.modules() if is_swiglu(m)]
    return _replace_forward(mlps, _swiglu_forward)


def is_swiglu(module: Any) -> bool:
    """Whether ``module`` is a SiLU-gated Llama MLP, whose forward :func:`_swiglu_forward` computes."""
    return type(module) is modeling_llama.LlamaMLP and module.config.hidden_act in ("silu", "swish")


def _swiglu_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    return self.down_proj(SiluMul.apply(self.gate_proj(x), self.up_proj(x)))


def fused_mlp(mlp: Any, x: torch.Tensor) -> torch.Tensor:
    """``mlp(x)``, computed as :func:`use_torch_swiglu` computes it where ``mlp`` is a SiLU-gated Llama MLP
    (another module runs its own forward)."""
    if is_swiglu(mlp):
        return _swiglu_forward(mlp, x)
    return mlp(x)


def use_torch_rope(model: Any) -> int:
    """Compute the rotary embedding of each Llama attention layer of ``model`` with :func:`rotary_pos_emb`; return
    how many layers use it. Per layer: its forward is transformers' own, reading ``apply_rotary_pos_emb`` from
    a copy of its module's globals where that name is :func:`rotary_pos_emb` (0 when the forward names no
    ``apply_rotary_pos_emb``: a transformers release that computes RoPE otherwise keeps its own)."""
    forward = _attention_forward_with_fused_rope()
    if forward is None:
        return 0
    layers = [m for m in model.model.language_model.modules() if type(m) is modeling_llama.LlamaAttention]
    return _replace_forward(layers, forward)


_FUSED_ROPE_FORWARD: list[Any] = []


def _attention_forward_with_fused_rope() -> Any:
    """``LlamaAttention.forward`` (through its decorators) reading :func:`rotary_pos_emb` as its
    ``apply_rotary_pos_emb``, built once; None when the forward does not name that function."""
    if not _FUSED_ROPE_FORWARD:
        forward = modeling_llama.LlamaAttention.forward
        inner = forward
        while hasattr(inner, "__wrapped__"):
            inner = inner.__wrapped__
        names = inner.__code__.co_names if isinstance(inner, FunctionType) else ()
        if "apply_rotary_pos_emb" not in names:
            log.info("LlamaAttention.forward names no apply_rotary_pos_emb: its rotary embedding is left as it is")
            _FUSED_ROPE_FORWARD.append(None)
        else:
            _FUSED_ROPE_FORWARD.append(_with_globals(forward, {"apply_rotary_pos_emb": rotary_pos_emb}))
    return _FUSED_ROPE_FORWARD[0]


def _with_globals(function: FunctionType, replacements: dict[str, Any]) -> FunctionType:
    """A copy of ``function`` whose global names in ``replacements`` resolve to those objects, in a copy of its
    module's globals (the module itself is not touched). A decorator's wrapper (``functools.wraps``) is copied
    around a copy of the function it wraps, so the decorator still runs."""
    wrapped = getattr(function, "__wrapped__", None)
    if wrapped is None:
        scope = {**function.__globals__, **replacements}
        copy = FunctionType(function.__code__, scope, function.__name__, function.__defaults__, function.__closure__)
    else:
        inner = _with_globals(wrapped, replacements)
        cells = tuple(CellType(inner) if _cell_holds(cell, wrapped) else cell for cell in function.__closure__ or ())
        if not any(_cell_holds(cell, inner) for cell in cells):
            raise TypeError(f"{function.__qualname__}: its wrapper does not hold the function it wraps")
        copy = FunctionType(function.__code__, function.__globals__, function.__name__, function.__defaults__, cells)
        copy.__wrapped__ = inner  # type: ignore[attr-defined]
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copy.__module__ = function.__module__
    return copy


def _cell_holds(cell: CellType, value: Any) -> bool:
    try:
        return cell.cell_contents is value
    except ValueError:  # an empty cell
        return False

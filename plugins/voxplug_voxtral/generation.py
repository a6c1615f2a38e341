"""Greedy transcription with a Voxtral model (base, PEFT-wrapped or merged), fast and token for token the same as
transformers' ``generate``.

:func:`transcribe` hands :class:`VoxtralDecoding` to :func:`voxplug.evaluation.batching.transcribe_clips`, which
batches clips by prompt length, runs each prompt batch through the model once (the audio encoder included) and then
decodes with :class:`LanguageModelCache`: the language model's keys and values in buffers allocated once, and a step
built from the model's own modules (embeddings, rotary table, norms, projections, MLPs, ``lm_head``; PEFT LoRA
layers folded, :class:`LayerProjections`) with one change: attention reads only the filled part of the cache, with
grouped-query attention never repeating the keys and values for every head (:class:`StepAttention`: by default
voxplug's Triton kernels on a GPU that serves them, :mod:`voxplug_voxtral.decode_kernels`, else FlashAttention's
variable-length kernel, else SDPA over the filled span).

:func:`generate_batch` is the plain path the fast one is measured and tested against: the processor's prompts and
``model.generate``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voxplug.api import (
    DecodeStats,
    base_model,
    compute_dtype,
    contiguous_residual_stream_while,
    fold_lora,
    transcribe_clips,
    unplanned_attention,
)
from voxplug_voxtral.collator import VoxtralBatchBuilder
from voxplug_voxtral.transcription_inputs import TranscriptionInputs, is_voxtral_processor

if TYPE_CHECKING:
    import numpy as np
    import torch

AUDIO_TOKEN_ID = 24
AUDIO_TOKENS_PER_CHUNK = 375
CHUNK_SAMPLES = 30 * 16000
#: The most prompt tokens besides the audio ones (BOS, [INST], [BEGIN_AUDIO], [/INST], ``lang:xx``, [TRANSCRIBE]).
PROMPT_TOKENS = 16


def model_device(model: Any) -> torch.device:
    """Return the device of the model's first parameter (works through a PeftModel wrapper)."""
    return next(model.parameters()).device


def generate_batch(
    model: Any, batch: dict[str, torch.Tensor], *, max_new_tokens: int, pad_token_id: int, eos_token_id: int
) -> torch.Tensor:
    """Greedy-decode one left-padded prompt batch with ``model.generate`` and return only the new token ids."""
    import torch

    device = model_device(model)
    inputs = {key: value.to(device) for key, value in batch.items()}
    with torch.inference_mode():
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad_token_id,
            eos_token_id=eos_token_id,
        )
    return output[:, inputs["input_ids"].shape[1] :]


#: How a decoding step may lay out grouped-query attention (see :class:`StepAttention`).
ATTENTION_LAYOUTS = ("packed", "gqa", "varlen", "triton")
#: The layouts whose cache is position-major and read up to the step's position (no spans, no mask).
LENGTH_LAYOUTS = ("varlen", "triton")
#: The names :class:`StepAttention` takes for PyTorch's SDPA backends (``torch.nn.attention.SDPBackend``).
SDPA_BACKENDS = {
    "cudnn": "CUDNN_ATTENTION",
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "math": "MATH",
}


@dataclass(frozen=True)
class StepAttention:
    """How a decoding step attends to the cache.

    ``layout``: ``packed`` (the query heads that share a key/value head become that head's queries: one SDPA call
    over the cache's own heads, as transformers' SDPA path packs grouped-query attention), ``gqa`` (the query
    heads as they are, with SDPA's ``enable_gqa``) or ``varlen`` (the cache stored position-major, and where
    :func:`flash_varlen_serves` FlashAttention's variable-length kernel told each row's filled length,
    ``seqused_k``: no mask, no span, so one graph per row count, and no per-shape planning; elsewhere SDPA with a
    length mask) or ``triton`` (the same cache, and where :func:`~voxplug_voxtral.decode_kernels.triton_serves`
    voxplug's Triton kernels: the rotary embedding and the cache write as one kernel, and attention split over the
    positions when the rows alone leave the card idle; elsewhere as ``varlen``). All read every key/value head
    once and give the same tokens up to the roundings of their kernels (in half precision, near-ties may flip).
    ``backends``: the SDPA backends the step may use (``cudnn``, ``flash``,
    ``efficient``, ``math``; None: PyTorch's own choice), for measuring which is fastest on a card. ``tile``: the
    ``triton`` attention's positions per block, warps and pipeline stages (None: 64, 4, 2). The decoder's default
    is :func:`default_step_attention`.
    """

    layout: str = "packed"
    backends: tuple[str, ...] | None = None
    tile: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if self.layout not in ATTENTION_LAYOUTS:
            raise ValueError(f"attention layout {self.layout!r}: expected one of {', '.join(ATTENTION_LAYOUTS)}")
        unknown = set(self.backends or ()) - set(SDPA_BACKENDS)
        if unknown:
            raise ValueError(f"SDPA backends {sorted(unknown)}: expected some of {', '.join(SDPA_BACKENDS)}")
        if self.layout in LENGTH_LAYOUTS and self.backends is not None:
            raise ValueError(f"the {self.layout} layout calls its kernels itself: SDPA backends do not apply to it")
        if self.tile is not None and self.layout != "triton":
            raise ValueError(f"a tile is the triton layout's; the {self.layout} layout takes none")
        if self.tile is not None:
            from voxplug_voxtral.decode_kernels import check_tile

            check_tile(*self.tile)

    def backend_context(self) -> AbstractContextManager[Any]:
        """The SDPA backends allowed while the step runs (a host-side setting, so it holds in a captured graph)."""
        if self.backends is None:
            return nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([getattr(SDPBackend, SDPA_BACKENDS[name]) for name in self.backends])


def attend(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    layout: str = "packed",
) -> torch.Tensor:
    """One query per row (``(rows, heads, 1, dim)``) against ``(rows, kv heads, span, dim)``; ``(rows, 1, width)``.

    Without a mask, SDPA's own grouped-query attention (what transformers calls); with one, the ``packed`` layout
    gives the query heads that share a key/value head as that head's queries, the ``gqa`` layout hands SDPA the
    heads as they are with ``enable_gqa`` (see :class:`StepAttention`). Either way the cache is never repeated.
    """
    import torch

    rows, heads, _, dim = query.shape
    groups = heads // keys.shape[1]
    if mask is None or layout == "gqa":
        out = torch.nn.functional.scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, scale=scale, enable_gqa=groups > 1
        )
    else:
        packed = query.reshape(rows, keys.shape[1], groups, dim)
        out = torch.nn.functional.scaled_dot_product_attention(packed, keys, values, attn_mask=mask, scale=scale)
    return out.reshape(rows, 1, heads * dim)


class LanguageModelCache:
    """The language model's keys and values for ``rows`` x ``positions``, and its one-token decoder step."""

    def __init__(
        self, model: Any, rows: int, positions: int, attention: StepAttention | None = None, stack: bool = False
    ) -> None:
        from transformers.integrations import is_deepspeed_zero3_enabled

        self.attention = attention or StepAttention()
        self.language_model = model.model.language_model
        self.lm_head = model.lm_head
        self.layers = list(self.language_model.layers[: self.language_model.config.num_hidden_layers])
        self.rows, self.positions = rows, positions
        self.device = next(model.parameters()).device
        self.fused = not is_deepspeed_zero3_enabled()
        #: the step computes each block's q/k/v and gate/up projections as one matmul over copies of their weights
        self.stack = stack and self.fused
        #: the step bounds attention by the position itself (the decoder then needs no spans and no mask)
        self.reads_lengths = self.attention.layout in LENGTH_LAYOUTS
        #: the cache's position axis: 2 in ``(rows, heads, positions, dim)``, 1 in the length layouts' position-major
        self.axis = 1 if self.reads_lengths else 2
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.lengths: LengthAttention | None = None
        self.projections: list[LayerProjections] | None = None  # built at the first step, in its dtype

    def load(self, cache: Any, offset: int) -> None:
        """Copy a prompt pass's cache (a ``DynamicCache``) into rows ``offset`` onwards."""
        import torch

        for index, layer in enumerate(cache.layers):
            heads, dim = layer.keys.shape[1], layer.keys.shape[-1]
            if len(self.keys) <= index:  # allocated on first use, both in the dtype the projections computed in
                shape = (self.rows, heads, self.positions, dim)
                if self.reads_lengths:
                    shape = (self.rows, self.positions, heads, dim)
                self.keys.append(torch.zeros(shape, dtype=layer.values.dtype, device=self.device))
                self.values.append(torch.zeros(shape, dtype=layer.values.dtype, device=self.device))
            count, length = layer.keys.shape[0], layer.keys.shape[2]
            keys, values = layer.keys, layer.values
            if self.reads_lengths:
                keys, values = keys.transpose(1, 2), values.transpose(1, 2)
            self.keys[index][offset : offset + count].narrow(self.axis, 0, length).copy_(keys)
            self.values[index][offset : offset + count].narrow(self.axis, 0, length).copy_(values)
        if self.reads_lengths and self.lengths is None:
            self.lengths = LengthAttention(self.keys[0], self.rows, self.positions, self.attention)

    def step(self, ids: torch.Tensor, position: torch.Tensor, span: int, mask: torch.Tensor | None) -> torch.Tensor:
        """Next-token logits (float32) for ``ids`` at ``position``; see :class:`~voxplug.evaluation.decoding.
        DecodeState`."""
        language_model = self.language_model
        hidden = language_model.embed_tokens(ids)
        if self.projections is None:
            dtype = compute_dtype(hidden.device, hidden.dtype)
            self.projections = [LayerProjections.of(layer, dtype, self.fused, self.stack) for layer in self.layers]
        cos, sin = language_model.rotary_emb(hidden, position_ids=position.view(1, 1))
        with self.attention.backend_context():
            for index, layer in enumerate(self.layers):
                hidden = self._layer(index, layer, hidden, (cos, sin), position, span, mask)
        hidden = language_model.norm(hidden)
        return self.lm_head(hidden[:, -1]).float()

    def _layer(
        self,
        index: int,
        layer: Any,
        hidden: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        position: torch.Tensor,
        span: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """A Llama decoder layer for one new token: ``LlamaDecoderLayer.forward``'s arithmetic, in its order, with
        the norms, the rotary embedding and SwiGLU computed by :mod:`voxplug_voxtral.kernels`' fused kernels and
        LoRA layers folded (:class:`LayerProjections`): a step is a few hundred small kernels, so each one saved
        shortens it. Under DeepSpeed ZeRO-3 the norms, projections and MLPs run their own forwards instead: a
        module's weights are gathered only when the module itself is called.
        """
        from voxplug_voxtral.kernels import fused_rms_norm, rotary_pos_emb

        assert self.projections is not None
        projections = self.projections[index]
        norm = fused_rms_norm if self.fused else _own_forward
        attention, rows = layer.self_attn, hidden.shape[0]
        normed = norm(layer.input_layernorm, hidden)
        keys, values = self.keys[index][:rows], self.values[index][:rows]
        outputs = projections.qkv(normed)
        if self.lengths is not None and self.lengths.serves_rotated(outputs, rotary[0], keys):
            query = self.lengths.rope_append(*outputs, *rotary, keys, values, position)
            attended = self.lengths.attend_rotated(query, keys, values, position, attention.scaling)
            hidden = hidden + projections.output(attended)
            return hidden + projections.mlp(norm(layer.post_attention_layernorm, hidden))
        shape = (rows, 1, -1, attention.head_dim)
        query, key, value = (out.view(shape).transpose(1, 2) for out in outputs)
        query, key = rotary_pos_emb(query, key, *rotary)
        # Everything attends in the cache's dtype: under autocast over fp32 weights the rotary embedding promotes
        # the query and key to fp32, and a prompt pass under accelerate's autocast (the Trainer's model) may have
        # filled the cache in another dtype than these steps compute in.
        if self.lengths is not None:  # position-major: (rows, 1, heads, dim) at the position
            keys.index_copy_(1, position.view(1), key.transpose(1, 2).to(keys.dtype))
            values.index_copy_(1, position.view(1), value.transpose(1, 2).to(values.dtype))
            attended = self.lengths.attend(query.to(keys.dtype), keys, values, position, attention.scaling)
        else:
            keys.index_copy_(2, position.view(1), key.to(keys.dtype))
            values.index_copy_(2, position.view(1), value.to(values.dtype))
            layout, scale = self.attention.layout, attention.scaling
            attended = attend(query.to(keys.dtype), keys[:, :, :span], values[:, :, :span], mask, scale, layout)
        hidden = hidden + projections.output(attended.to(value.dtype))
        return hidden + projections.mlp(norm(layer.post_attention_layernorm, hidden))

    def move_rows(self, keep: torch.Tensor) -> None:
        """Copy rows ``keep`` of every buffer to its first rows."""
        for buffer in (*self.keys, *self.values):
            buffer[: len(keep)] = buffer[keep]


def flash_varlen_applies(cache: torch.Tensor) -> bool:
    """Whether FlashAttention-2's variable-length kernel can read ``cache`` (see :func:`flash_varlen_serves`)."""
    return flash_varlen_serves(cache.device, cache.dtype, cache.shape[-1])


def flash_varlen_serves(device: torch.device, dtype: torch.dtype, head_dim: int) -> bool:
    """Whether FlashAttention-2's variable-length kernel serves a cache of this device, dtype and head size: an
    NVIDIA GPU of compute capability 8.0 or newer, half precision, a head size that is a multiple of 8 up to 256
    (the kernel pads nothing itself), and a torch built with FlashAttention whose op takes ``seqused_k``."""
    import torch

    if device.type != "cuda" or torch.version.hip is not None or dtype not in (torch.float16, torch.bfloat16):
        return False
    if head_dim % 8 or head_dim > 256 or not torch.backends.cuda.is_flash_attention_available():
        return False
    if torch.cuda.get_device_capability(device) < (8, 0):
        return False
    return "seqused_k" in str(torch.ops.aten._flash_attention_forward.default._schema)


def default_step_attention(device: torch.device, dtype: torch.dtype, head_dim: int) -> StepAttention:
    """``triton`` where voxplug's Triton kernels serve the cache, else ``varlen`` where FlashAttention's
    variable-length kernel does (either: no mask, nothing planned per shape, one graph per row count), else
    ``packed``: SDPA over the filled span with a mask."""
    from voxplug_voxtral.decode_kernels import triton_serves

    if triton_serves(device, dtype, head_dim):
        return StepAttention("triton")
    return StepAttention("varlen" if flash_varlen_serves(device, dtype, head_dim) else "packed")


def triton_applies(cache: torch.Tensor) -> bool:
    """Whether voxplug's Triton decoding kernels serve ``cache`` (:func:`~voxplug_voxtral.decode_kernels.
    triton_serves`)."""
    from voxplug_voxtral.decode_kernels import triton_serves

    return triton_serves(cache.device, cache.dtype, cache.shape[-1])


class LengthAttention:
    """One query per row against the first ``position + 1`` positions of a position-major cache (``(rows,
    positions, kv heads, dim)``), every row as long as the others (a batch shares its prompt length).

    With the ``triton`` layout, where :func:`triton_applies`, voxplug's Triton kernels
    (:meth:`attend_rotated`). Else, where :func:`flash_varlen_applies`, FlashAttention's variable-length kernel
    (PyTorch's ``aten._flash_attention_forward``, as ``torch.nn.attention.varlen`` calls it) with each row's
    filled length in ``seqused_k``: it reads only those positions and takes grouped-query heads as they are; no
    mask, and nothing planned per shape. Elsewhere, SDPA with a length mask.
    """

    def __init__(self, like: torch.Tensor, rows: int, positions: int, attention: StepAttention | None = None) -> None:
        import torch

        self.positions = positions
        self.triton = attention is not None and attention.layout == "triton" and triton_applies(like)
        self.tile = (attention.tile if attention is not None else None) or (64, 4, 2)
        if self.triton:
            from voxplug_voxtral import decode_kernels

            self.kernels = decode_kernels
        self.splits: dict[int, int] = {}  # by row count
        self.flash = flash_varlen_applies(like)
        steps = torch.arange(rows + 1, dtype=torch.int32, device=like.device)
        self.query_starts, self.key_starts = steps, steps * positions
        self.arange = torch.arange(positions, device=like.device)

    def serves_rotated(self, outputs: tuple[torch.Tensor, ...], cos: torch.Tensor, keys: torch.Tensor) -> bool:
        """Whether the Triton kernels take this step's projections (their outputs and cos in the cache's dtype,
        cos in float32 too) through :meth:`rope_append` and :meth:`attend_rotated`."""
        import torch

        dtypes = {out.dtype for out in outputs}
        return self.triton and dtypes == {keys.dtype} and cos.dtype in (keys.dtype, torch.float32)

    def rope_append(self, *args: torch.Tensor) -> torch.Tensor:
        """:func:`~voxplug_voxtral.decode_kernels.rope_append`."""
        return self.kernels.rope_append(*args)

    def attend_rotated(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, position: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """``query`` ``(rows, heads, dim)``, contiguous, against ``keys``/``values`` up to ``position`` with the
        Triton kernel; ``(rows, 1, width)``."""
        rows, _, kv_heads, _ = keys.shape
        block, warps, stages = self.tile
        splits = self.splits.get(rows)
        if splits is None:
            splits = self.splits[rows] = self.kernels.attention_splits(
                rows, kv_heads, self.positions, keys.device, block
            )
        return self.kernels.decode_attention(query, keys, values, position, scale, splits, block, warps, stages)

    def attend(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, position: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """``query`` ``(rows, heads, 1, dim)`` against ``keys``/``values`` up to ``position``; ``(rows, 1, width)``."""
        import torch

        rows, heads, _, dim = query.shape
        if not self.flash:
            mask = (self.arange <= position).view(1, 1, 1, -1)
            out = torch.nn.functional.scaled_dot_product_attention(
                query, keys.transpose(1, 2), values.transpose(1, 2), attn_mask=mask, scale=scale, enable_gqa=True
            )
            return out.reshape(rows, 1, heads * dim)
        kv_heads = keys.shape[2]
        used = (position + 1).to(torch.int32).repeat(rows)
        out = torch.ops.aten._flash_attention_forward(
            query.reshape(rows, heads, dim),
            keys.reshape(rows * self.positions, kv_heads, dim),
            values.reshape(rows * self.positions, kv_heads, dim),
            self.query_starts[: rows + 1],
            self.key_starts[: rows + 1],
            1,
            self.positions,
            0.0,
            False,
            False,
            scale=scale,
            seqused_k=used,
        )[0]
        return out.reshape(rows, 1, heads * dim)


def _own_forward(module: Any, hidden: torch.Tensor) -> torch.Tensor:
    return module(hidden)


@dataclass(frozen=True)
class LayerProjections:
    """The linear layers of one Llama decoder layer as the decoding step calls them: ``qkv`` gives the query, key
    and value projections, ``output`` the attention's output projection, ``mlp`` the whole MLP. PEFT LoRA layers
    that read one input are folded (:func:`~voxplug.api.fold_lora`, their adapters copied once per transcription);
    every other layer runs its own forward."""

    qkv: Any
    output: Any
    mlp: Any

    @classmethod
    def of(cls, layer: Any, dtype: torch.dtype, fold: bool, stack: bool = False) -> LayerProjections:
        """``layer``'s projections computing in ``dtype``, folding LoRA layers where ``fold``, and where ``stack``
        the layers that read one input as one matmul (:func:`stack_linears`)."""
        from voxplug_voxtral.kernels import SiluMul, fused_mlp, is_swiglu

        attention, mlp = layer.self_attn, layer.mlp
        qkv = fold_lora([attention.q_proj, attention.k_proj, attention.v_proj], dtype) if fold else None
        if stack:
            qkv = stack_linears([attention.q_proj, attention.k_proj, attention.v_proj], dtype, qkv) or qkv
        output = fold_lora([attention.o_proj], dtype) if fold else None
        swiglu = fold and is_swiglu(mlp)
        gate_up = fold_lora([mlp.gate_proj, mlp.up_proj], dtype) if swiglu else None
        if stack and swiglu:
            gate_up = stack_linears([mlp.gate_proj, mlp.up_proj], dtype, gate_up) or gate_up
        down = fold_lora([mlp.down_proj], dtype) if swiglu else None
        folded_mlp = gate_up is not None or down is not None

        def projections(hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
            if qkv is not None:
                return qkv(hidden)
            return attention.q_proj(hidden), attention.k_proj(hidden), attention.v_proj(hidden)

        def forward_mlp(hidden: torch.Tensor) -> torch.Tensor:
            if not folded_mlp:  # computed as the fused kernels compute it (an unfolded SwiGLU included)
                return fused_mlp(mlp, hidden) if fold else mlp(hidden)
            gate, up = gate_up(hidden) if gate_up is not None else (mlp.gate_proj(hidden), mlp.up_proj(hidden))
            inner = SiluMul.apply(gate, up)
            return down(inner)[0] if down is not None else mlp.down_proj(inner)

        return cls(
            qkv=projections,
            output=(lambda hidden: output(hidden)[0]) if output is not None else attention.o_proj,
            mlp=forward_mlp,
        )


@dataclass(frozen=True)
class StackedLinear:
    """Linear layers on one input as one matmul over a copy of their weights stacked in ``dtype``, and their folded
    LoRA adapters (:class:`~voxplug.api.FoldedLora`) added to each layer's columns; calling it on ``x`` gives each
    layer's output, in order, as views of one tensor."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    widths: tuple[int, ...]
    lora: Any  # FoldedLora | None

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        import torch

        flat = x.reshape(-1, x.shape[-1]).to(self.weight.dtype)
        out = torch.mm(flat, self.weight.t()) if self.bias is None else torch.addmm(self.bias, flat, self.weight.t())
        outs = out.split_with_sizes(list(self.widths), dim=1)
        if self.lora is not None:
            wide = self.lora.adapter_dtype != flat.dtype  # float32 adapters: added in float32, rounded once
            low = torch.mm(flat.to(self.lora.adapter_dtype) if wide else flat, self.lora.down.t())
            parts = low.split_with_sizes(list(self.lora.ranks), dim=1)
            for part, up, scaling, columns in zip(parts, self.lora.ups, self.lora.scalings, outs, strict=True):
                if wide:
                    columns.copy_(torch.addmm(columns.to(self.lora.adapter_dtype), part, up.t(), alpha=scaling))
                else:
                    columns.addmm_(part, up.t(), alpha=scaling)
        return tuple(columns.view(*x.shape[:-1], columns.shape[-1]) for columns in outs)


def stack_linears(layers: list[Any], dtype: torch.dtype, folded: Any = None) -> StackedLinear | None:
    """``layers`` (all called on one input) as one :class:`StackedLinear` computing in ``dtype``: each a plain
    ``torch.nn.Linear``, or a PEFT LoRA layer over one when ``folded`` (their :func:`~voxplug.api.fold_lora`)
    holds them all; None otherwise. The copy is what autocast would cast each weight to at every call."""
    import torch

    if folded is None:
        if not all(type(layer) is torch.nn.Linear for layer in layers):
            return None
        bases, biases = [layer.weight for layer in layers], [layer.bias for layer in layers]
    else:
        bases, biases = list(folded.weights), list(folded.biases)
    if any(bias is not None for bias in biases) and any(bias is None for bias in biases):
        return None
    with torch.no_grad():
        weight = torch.cat([base.detach().to(dtype) for base in bases])
        bias = torch.cat([b.detach().to(dtype) for b in biases]) if biases[0] is not None else None
    return StackedLinear(weight, bias, tuple(base.shape[0] for base in bases), folded)


@dataclass
class VoxtralPrompts:
    """Prompts of one length and the mel features of their clips' 30 s chunks, in order."""

    input_ids: torch.Tensor
    features: torch.Tensor

    @property
    def prompt_length(self) -> int:
        return int(self.input_ids.shape[1])


class VoxtralDecoding:
    """:class:`voxplug.evaluation.batching.FastTranscription` for one Voxtral model and its processor.

    Prompts and features come from :class:`~voxplug_voxtral.transcription_inputs.TranscriptionInputs` (the
    processor's, without its per-clip work; features computed on the model's device), or from the processor
    itself where that cannot reproduce them, or with ``processor_inputs``.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        model_id: str = "voxtral",
        attention: StepAttention | None = None,
        processor_inputs: bool = False,
        stack_projections: bool = False,
    ) -> None:
        import torch

        self.model = base_model(model)
        self.stack_projections = stack_projections
        self.collator = VoxtralBatchBuilder(processor, model_id=model_id)
        self.device = model_device(self.model)
        fast = not processor_inputs and is_voxtral_processor(processor)
        self.inputs = TranscriptionInputs(self.collator, self.device) if fast else None
        self.eos_ids = (self.collator.eos_token_id,)
        self.pad_id = self.collator.pad_token_id
        text = self.model.config.text_config
        self.max_positions = int(text.max_position_embeddings)
        autocast = self.device.type == "cuda" and torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else next(self.model.parameters()).dtype
        self.dtype_bytes = torch.empty((), dtype=dtype).element_size()
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        self.attention = attention or default_step_attention(self.device, dtype, head_dim)
        self.kv_bytes_per_position = 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * self.dtype_bytes
        self.vocab_size = int(text.vocab_size)

    def prompt_key(self, audio: np.ndarray, language: str | None) -> Hashable:
        """30 s chunks and language: what a prompt's length depends on."""
        return max(1, math.ceil(len(audio) / CHUNK_SAMPLES)), language

    def prompt_length(self, key: Hashable) -> int:
        chunks, _ = key  # type: ignore[misc]
        return AUDIO_TOKENS_PER_CHUNK * chunks + PROMPT_TOKENS

    def row_bytes(self, positions: int) -> int:
        """The row's keys and values, and its float32 logits three times over (logits, argmax, margins)."""
        return positions * self.kv_bytes_per_position + 3 * 4 * self.vocab_size

    def prefill_bytes(self, key: Hashable) -> int:
        """The prompt's cache and a layer's activations, and the encoder's activations for its chunks."""
        chunks, _ = key  # type: ignore[misc]
        text, audio = self.model.config.text_config, self.model.config.audio_config
        length = self.prompt_length(key)
        activations = 8 * text.hidden_size + 3 * text.intermediate_size
        encoder = chunks * 1500 * 16 * audio.hidden_size
        return length * self.kv_bytes_per_position + (length * activations + encoder) * self.dtype_bytes

    def encode(self, audios: Sequence[np.ndarray], languages: Sequence[str | None]) -> VoxtralPrompts:
        """The processor's prompts and features for clips of one prompt key (so of one prompt length)."""
        import torch

        rows = [{"audio": audio, "language": language} for audio, language in zip(audios, languages, strict=True)]
        encoded = self.inputs.encode(rows) if self.inputs is not None else None
        prompts, features = encoded or self.collator.encode_prompts(rows)
        lengths = sorted({len(prompt) for prompt in prompts})
        if len(lengths) > 1:
            raise ValueError(f"clips of one prompt key got prompts of {lengths} tokens")
        return VoxtralPrompts(torch.tensor(prompts), features)

    def new_state(self, rows: int, positions: int) -> LanguageModelCache:
        return LanguageModelCache(self.model, rows, positions, self.attention, self.stack_projections)

    def prefill(self, batch: VoxtralPrompts, state: LanguageModelCache, offset: int) -> torch.Tensor:
        """The model's forward pass over the prompts (the audio encoder once per clip); first-token logits.

        Attention runs through :func:`~voxplug.api.unplanned_attention`: every prompt length and
        row count is a new shape, which cuDNN's attention would plan on the host first. The encoder's residual
        stream is contiguous (:func:`~voxplug.api.contiguous_residual_stream_while`)."""
        import torch

        features = batch.features.to(self.device)
        if features.device.type == "cuda":  # made on the feature stream: its memory is in use on this one now
            features.record_stream(torch.cuda.current_stream(self.device))
        with unplanned_attention(), contiguous_residual_stream_while(self.model.model.audio_tower):
            output = self.model(
                input_ids=batch.input_ids.to(self.device),
                input_features=features,
                use_cache=True,
                logits_to_keep=1,
            )
        state.load(output.cache, offset)
        return output.logits[:, -1].float()


def transcribe_ids(
    model: Any,
    processor: Any,
    audios: list[np.ndarray],
    languages: Sequence[str | None],
    *,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    cuda_graphs: bool = True,
    graph_shapes: bool | None = None,
    model_id: str = "voxtral",
    stats: DecodeStats | None = None,
    attention: StepAttention | None = None,
    processor_inputs: bool = False,
    stack_projections: bool = False,
) -> list[list[int]]:
    """Greedy new token ids of each clip, without the end-of-sequence token (see :func:`transcribe`).

    ``graph_shapes`` runs the GPU's decoding shapes on any device (see :func:`~voxplug.evaluation.batching.
    transcribe_clips`); ``attention`` chooses how the decoding steps attend (:class:`StepAttention`);
    ``processor_inputs`` has the processor prepare every clip itself (see :class:`VoxtralDecoding`);
    ``stack_projections`` computes each block's q/k/v and gate/up projections as one matmul each, over copies of
    their weights (:func:`stack_linears`).
    """
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            return transcribe_clips(
                VoxtralDecoding(
                    model,
                    processor,
                    model_id=model_id,
                    attention=attention,
                    processor_inputs=processor_inputs,
                    stack_projections=stack_projections,
                ),
                audios,
                languages,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
                cuda_graphs=cuda_graphs,
                graph_shapes=graph_shapes,
                stats=stats,
            )
    finally:
        model.train(was_training)


def transcribe(
    model: Any,
    processor: Any,
    audios: list[np.ndarray],
    languages: Sequence[str | None],
    *,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    cuda_graphs: bool = True,
    model_id: str = "voxtral",
    stats: DecodeStats | None = None,
) -> list[str]:
    """Transcribe 16 kHz mono clips greedily; one string per clip.

    ``languages`` holds an ISO 639-1 code or ``None`` (automatic detection) per clip. ``max_new_tokens`` caps
    every transcript (None: a budget from each clip's length); ``batch_size`` is the most clips decoded together
    (None: as many as free GPU memory holds). Only the new tokens are decoded, with special tokens skipped. The
    model is put in eval mode for the call and restored afterwards.
    """
    ids = transcribe_ids(
        model,
        processor,
        audios,
        languages,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        cuda_graphs=cuda_graphs,
        model_id=model_id,
        stats=stats,
    )
    return [text.strip() for text in processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]

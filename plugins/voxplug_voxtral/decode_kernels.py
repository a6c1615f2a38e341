"""Triton kernels for Voxtral's one-token decoding step over a position-major cache (``(rows, positions, kv heads,
dim)``, every row filled up to the same position).

:func:`rope_append` rotates the new token's query and key (Llama's rotary embedding, rounded as
:func:`voxplug_voxtral.kernels.rotary_pos_emb` rounds it) and writes the key and value into the cache: one kernel
where PyTorch runs about ten small ones per layer. :func:`decode_attention` attends one query per head to the filled
positions, reading each key/value head once for all the query heads that share it, split over the positions when
the batch alone gives the card too few thread blocks, as flash-decoding does. Both read the position from the
device, so a captured step replays at every position. Used where :func:`triton_serves` a cache.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch.profiler import record_function


def triton_serves(device: torch.device, dtype: torch.dtype, head_dim: int) -> bool:
    """Whether these kernels serve a cache of this device, dtype and head size: an NVIDIA GPU of compute
    capability 8.0 or newer with Triton installed, half precision, and a head size that is a power of two from 16
    to 128 (the matrix units' smallest tile, Triton's block shapes, and tiles that fit every such card's shared
    memory)."""
    if device.type != "cuda" or torch.version.hip is not None or dtype not in (torch.float16, torch.bfloat16):
        return False
    if head_dim < 16 or head_dim > 128 or head_dim & (head_dim - 1):
        return False
    if torch.cuda.get_device_capability(device) < (8, 0):
        return False
    return _kernels() is not None


@functools.cache
def _kernels() -> Any:
    """The compiled-on-first-call Triton kernels, or None where Triton is not installed."""
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def rope_append_kernel(
        q_ptr, k_ptr, v_ptr, cos_ptr, sin_ptr, position_ptr, q_out_ptr, keys_ptr, values_ptr,
        q_row, q_head, k_row, k_head, v_row, v_head,
        cache_row, cache_position, cache_head,
        HEADS: tl.constexpr, KV_HEADS: tl.constexpr, BLOCK_HEADS: tl.constexpr, HALF: tl.constexpr,
        ROUND: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0).to(tl.int64)  # offsets past 2**31 elements stay exact
        position = tl.load(position_ptr)
        heads = tl.arange(0, BLOCK_HEADS)[:, None]
        dims = tl.arange(0, HALF)[None, :]
        c1, c2 = tl.load(cos_ptr + dims).to(tl.float32), tl.load(cos_ptr + HALF + dims).to(tl.float32)
        s1, s2 = tl.load(sin_ptr + dims).to(tl.float32), tl.load(sin_ptr + HALF + dims).to(tl.float32)
        dtype = q_out_ptr.dtype.element_ty
        # query: out1 = x1 c1 - x2 s1, out2 = x2 c2 + x1 s2; where cos and sin are in the query's dtype, the first
        # product is rounded to it before the second (exact in float32) is added, as PyTorch's mul then addcmul_
        # round it
        on = heads < HEADS
        x = q_ptr + row * q_row + heads * q_head + dims
        x1, x2 = tl.load(x, mask=on).to(tl.float32), tl.load(x + HALF, mask=on).to(tl.float32)
        a1, a2 = x1 * c1, x2 * c2
        if ROUND:
            a1, a2 = a1.to(dtype).to(tl.float32), a2.to(dtype).to(tl.float32)
        out = q_out_ptr + (row * HEADS + heads) * (2 * HALF) + dims
        tl.store(out, (a1 - x2 * s1).to(dtype), mask=on)
        tl.store(out + HALF, (a2 + x1 * s2).to(dtype), mask=on)
        # key, rotated the same way, and value into the cache at the position
        on = heads < KV_HEADS
        x = k_ptr + row * k_row + heads * k_head + dims
        x1, x2 = tl.load(x, mask=on).to(tl.float32), tl.load(x + HALF, mask=on).to(tl.float32)
        a1, a2 = x1 * c1, x2 * c2
        if ROUND:
            a1, a2 = a1.to(dtype).to(tl.float32), a2.to(dtype).to(tl.float32)
        at = row * cache_row + position * cache_position + heads * cache_head + dims
        tl.store(keys_ptr + at, (a1 - x2 * s1).to(dtype), mask=on)
        tl.store(keys_ptr + at + HALF, (a2 + x1 * s2).to(dtype), mask=on)
        x = v_ptr + row * v_row + heads * v_head + dims
        tl.store(values_ptr + at, tl.load(x, mask=on), mask=on)
        tl.store(values_ptr + at + HALF, tl.load(x + HALF, mask=on), mask=on)

    # ``splits`` is not a compile-time constant (nor specialised on): a transcription whose batch shrinks compiles
    # this kernel twice at most (whole and split), not once per number of splits
    @triton.jit(do_not_specialize=["splits"])
    def decode_attention_kernel(
        q_ptr, keys_ptr, values_ptr, position_ptr, out_ptr, part_ptr, lse_ptr, scale_log2, splits,
        cache_row, cache_position, cache_head,
        HEADS: tl.constexpr, GROUP: tl.constexpr, BLOCK_GROUP: tl.constexpr, DIM: tl.constexpr,
        BLOCK_N: tl.constexpr, SPLIT: tl.constexpr,
    ):  # fmt: skip
        row, kv_head, split = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)
        length = tl.load(position_ptr).to(tl.int32) + 1
        per_split = ((length + splits - 1) // splits + BLOCK_N - 1) // BLOCK_N * BLOCK_N
        start = split * per_split
        end = tl.minimum(start + per_split, length)
        group = tl.arange(0, BLOCK_GROUP)
        heads = kv_head * GROUP + group
        dims = tl.arange(0, DIM)
        on = (group < GROUP)[:, None]
        query = tl.load(q_ptr + (row * HEADS + heads[:, None]) * DIM + dims[None, :], mask=on, other=0.0)
        best = tl.full([BLOCK_GROUP], float("-inf"), tl.float32)
        total = tl.zeros([BLOCK_GROUP], tl.float32)
        acc = tl.zeros([BLOCK_GROUP, DIM], tl.float32)
        base = row * cache_row + kv_head * cache_head + dims[None, :]
        for first in tl.range(start, end, BLOCK_N):
            positions = first + tl.arange(0, BLOCK_N)
            filled = positions < end
            at = base + positions[:, None] * cache_position
            keys = tl.load(keys_ptr + at, mask=filled[:, None], other=0.0)
            scores = tl.dot(query, tl.trans(keys)) * scale_log2
            scores = tl.where(filled[None, :], scores, float("-inf"))
            new_best = tl.maximum(best, tl.max(scores, 1))
            kept = tl.math.exp2(best - new_best)
            weights = tl.math.exp2(scores - new_best[:, None])
            total = total * kept + tl.sum(weights, 1)
            values = tl.load(values_ptr + at, mask=filled[:, None], other=0.0)
            acc = acc * kept[:, None] + tl.dot(weights.to(values.dtype), values)
            best = new_best
        if not SPLIT:
            out = out_ptr + (row * HEADS + heads[:, None]) * DIM + dims[None, :]
            tl.store(out, (acc / total[:, None]).to(out_ptr.dtype.element_ty), mask=on)
        else:
            some = total > 0  # a split past the filled positions has read nothing
            part = part_ptr + ((row * HEADS + heads[:, None]) * splits + split) * DIM + dims[None, :]
            tl.store(part, tl.where(some[:, None], acc / tl.where(some, total, 1.0)[:, None], 0.0), mask=on)
            lse = tl.where(some, best + tl.math.log2(tl.where(some, total, 1.0)), float("-inf"))
            tl.store(lse_ptr + (row * HEADS + heads) * splits + split, lse, mask=group < GROUP)

    @triton.jit(do_not_specialize=["splits"])
    def decode_attention_combine(part_ptr, lse_ptr, out_ptr, splits, DIM: tl.constexpr, MAX_SPLITS: tl.constexpr):
        head = tl.program_id(0).to(tl.int64)  # over rows x heads
        split = tl.arange(0, MAX_SPLITS)
        on = split < splits
        lse = tl.load(lse_ptr + head * splits + split, mask=on, other=float("-inf"))
        weights = tl.math.exp2(lse - tl.max(lse, 0))
        at = (head * splits + split[:, None]) * DIM + tl.arange(0, DIM)[None, :]
        parts = tl.load(part_ptr + at, mask=on[:, None], other=0.0)
        out = tl.sum(parts * weights[:, None], 0) / tl.sum(weights, 0)
        tl.store(out_ptr + head * DIM + tl.arange(0, DIM), out.to(out_ptr.dtype.element_ty))

    return rope_append_kernel, decode_attention_kernel, decode_attention_combine


def rope_append(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    position: torch.Tensor,
) -> torch.Tensor:
    """Rotate ``query`` and ``key`` (``(rows, 1, heads * dim)``, the projections' outputs) by ``cos``/``sin`` (one
    position's, ``dim`` wide, in the cache's dtype or float32), write the rotated key and ``value`` into
    ``keys``/``values`` (``(rows, positions, kv heads, dim)``) at ``position`` (a device scalar); return the rotated
    query, ``(rows, heads, dim)``. With cos and sin in the cache's dtype the values are
    :func:`~voxplug_voxtral.kernels.rotary_pos_emb`'s bit for bit; in float32, within a rounding of them (PyTorch
    may fuse a multiply-add that this kernel does not)."""
    rows, _, kv_heads, dim = keys.shape
    heads = query.shape[-1] // dim
    out = torch.empty(rows, heads, dim, dtype=keys.dtype, device=keys.device)
    if rows == 0:
        return out
    _check_cache(keys, values)
    for name, tensor, width in (
        ("query", query, heads * dim),
        ("key", key, kv_heads * dim),
        ("value", value, kv_heads * dim),
    ):
        if tensor.shape != (rows, 1, width) or tensor.stride(-1) != 1 or tensor.dtype != keys.dtype:
            raise ValueError(
                f"{name}: expected ({rows}, 1, {width}) {keys.dtype} with unit stride over its width; got "
                f"{tuple(tensor.shape)} {tensor.dtype}"
            )
    cos, sin = cos.reshape(-1), sin.reshape(-1)
    if cos.numel() != dim or sin.numel() != dim or not (cos.is_contiguous() and sin.is_contiguous()):
        raise ValueError(f"cos and sin: expected one position's {dim} values, contiguous; got {tuple(cos.shape)}")
    if cos.dtype != sin.dtype or cos.dtype not in (keys.dtype, torch.float32):
        raise ValueError(f"cos and sin: expected {keys.dtype} or float32, got {cos.dtype} and {sin.dtype}")
    rope_append_kernel = _kernels()[0]
    with _launching("voxplug::rope_append", keys):
        rope_append_kernel[(rows,)](
            query, key, value, cos, sin, position, out, keys, values,
            query.stride(0), dim, key.stride(0), dim, value.stride(0), dim,
            keys.stride(0), keys.stride(1), keys.stride(2),
            HEADS=heads, KV_HEADS=kv_heads, BLOCK_HEADS=_power_of_two(max(heads, kv_heads)), HALF=dim // 2,
            ROUND=cos.dtype == keys.dtype, enable_fp_fusion=False,  # each product rounded apart, as by mul
        )  # fmt: skip
    return out


#: The most parts :func:`decode_attention` splits the positions into.
MAX_SPLITS = 16


def attention_splits(rows: int, kv_heads: int, positions: int, device: torch.device, block: int = 64) -> int:
    """How many parts :func:`decode_attention` splits each row's positions into: enough thread blocks for two per
    streaming multiprocessor, a power of two up to :data:`MAX_SPLITS`, no part of the cache's ``positions`` shorter
    than one block (parts past the positions filled so far read nothing)."""
    units = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    splits = 1
    while splits < MAX_SPLITS and rows * kv_heads * splits < 2 * units and positions >= 2 * splits * block:
        splits *= 2
    return splits


def decode_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    position: torch.Tensor,
    scale: float,
    splits: int = 1,
    block: int = 64,
    warps: int = 4,
    stages: int = 2,
) -> torch.Tensor:
    """``query`` (``(rows, heads, dim)``, contiguous) against ``keys``/``values`` (``(rows, positions, kv heads,
    dim)``) up to and including ``position``: ``(rows, 1, heads * dim)``. ``splits`` (1 to :data:`MAX_SPLITS`) parts
    of the positions are attended by thread blocks of their own and combined; ``block``, ``warps`` and ``stages`` are
    Triton's tile of positions (a power of two from 16), warps per block and software-pipeline depth."""
    rows, heads, dim = query.shape
    kv_heads = keys.shape[2]
    out = torch.empty(rows, heads, dim, dtype=query.dtype, device=query.device)
    if rows == 0:
        return out.view(rows, 1, heads * dim)
    _check_cache(keys, values)
    if not query.is_contiguous() or query.dtype != keys.dtype or heads % kv_heads:
        raise ValueError(f"query: expected contiguous {keys.dtype}, heads a multiple of {kv_heads}")
    if splits < 1 or splits > MAX_SPLITS:
        raise ValueError(f"splits: expected 1 to {MAX_SPLITS}, got {splits}")
    check_tile(block, warps, stages)
    group = heads // kv_heads
    _, attention_kernel, combine_kernel = _kernels()
    part = lse = out
    if splits > 1:
        part = torch.empty(rows, heads, splits, dim, dtype=torch.float32, device=query.device)
        lse = torch.empty(rows, heads, splits, dtype=torch.float32, device=query.device)
    with _launching("voxplug::decode_attention", keys):
        attention_kernel[(rows, kv_heads, splits)](
            query, keys, values, position, out, part, lse, scale * math.log2(math.e), splits,
            keys.stride(0), keys.stride(1), keys.stride(2),
            HEADS=heads, GROUP=group, BLOCK_GROUP=max(16, _power_of_two(group)), DIM=dim,
            BLOCK_N=block, SPLIT=splits > 1, num_warps=warps, num_stages=stages,
        )  # fmt: skip
        if splits > 1:
            combine_kernel[(rows * heads,)](part, lse, out, splits, DIM=dim, MAX_SPLITS=MAX_SPLITS)
    return out.view(rows, 1, heads * dim)


def check_tile(block: int, warps: int, stages: int) -> None:
    """Refuse a tile :func:`decode_attention` cannot run: ``block`` a power of two from 16, ``warps`` a power of
    two from 1 to 16, ``stages`` from 1."""
    if block < 16 or block & (block - 1) or warps < 1 or warps > 16 or warps & (warps - 1) or stages < 1:
        raise ValueError(
            f"tile {block}x{warps}x{stages}: expected a block that is a power of two from 16, 1 to 16 warps (a power "
            "of two) and at least one stage"
        )


@contextmanager
def _launching(name: str, cache: torch.Tensor) -> Iterator[None]:
    """Launch on ``cache``'s device inside a profiler range of ``name``: a profile links the kernels Triton
    launches to the range (they run inside no PyTorch operator)."""
    with record_function(name), torch.cuda.device(cache.device) if cache.is_cuda else nullcontext():
        yield


def _check_cache(keys: torch.Tensor, values: torch.Tensor) -> None:
    if keys.shape != values.shape or keys.stride() != values.stride() or keys.stride(-1) != 1:
        raise ValueError("keys and values: expected one shape and layout, unit stride over the head size")


def _power_of_two(count: int) -> int:
    return 1 << (count - 1).bit_length()

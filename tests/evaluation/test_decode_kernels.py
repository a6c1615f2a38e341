"""voxplug's Triton decoding kernels (``voxplug_voxtral.decode_kernels``) on the CPU, run by Triton's interpreter
in float16 (its bfloat16 is not the GPU's). The GPU tests (``test_gpu.py``) run them compiled, in bfloat16 and
in CUDA graphs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from voxplug.testing.attention import masked_sdpa

# Triton's interpreter reads a loaded scalar as a one-element array, which NumPy deprecates
pytestmark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning")


@pytest.fixture
def kernels() -> Any:
    """The kernels as Triton's interpreter runs them (``tests/conftest.py`` chooses it on a machine without a GPU;
    on one with a GPU, the GPU tests run them compiled)."""
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton's interpreter is off (a GPU machine): test_gpu.py runs the kernels compiled")
    from voxplug_voxtral import decode_kernels

    return decode_kernels


def cache(rows: int, positions: int, kv_heads: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (rows, positions, kv_heads, dim)
    return (torch.randn(shape, generator=generator).half() for _ in range(2))  # type: ignore[return-value]


@pytest.mark.parametrize("rotary_dtype", [torch.float16, torch.float32])
def test_rope_append_writes_what_the_torch_step_writes(kernels: Any, rotary_dtype: torch.dtype) -> None:
    """The rotated query, and the key and value written at the position, are the values of the step's own rotary
    embedding and cache writes: exactly with cos and sin in the cache's dtype, within a rounding with float32 ones
    (PyTorch may fuse a multiply-add); nothing else is written."""
    from voxplug_voxtral.kernels import rotary_pos_emb

    rows, positions, heads, kv_heads, dim = 3, 40, 8, 2, 32
    keys, values = cache(rows, positions, kv_heads, dim)
    generator = torch.Generator().manual_seed(1)
    fused = torch.randn(rows, 1, (heads + 2 * kv_heads) * dim, generator=generator).half()
    query, key, value = fused.split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)  # views, as stacked
    angles = torch.rand(dim // 2, generator=generator) * 40
    cos, sin = (torch.cat([f(angles)] * 2).to(rotary_dtype).view(1, 1, dim) for f in (torch.cos, torch.sin))
    written_keys, written_values = keys.clone(), values.clone()
    rotated = kernels.rope_append(query, key, value, cos, sin, written_keys, written_values, torch.tensor(17))
    q, k = rotary_pos_emb(
        query.view(rows, 1, heads, dim).transpose(1, 2), key.view(rows, 1, kv_heads, dim).transpose(1, 2), cos, sin
    )
    if rotary_dtype == torch.float16:
        assert torch.equal(rotated, q[:, :, 0].half())
        assert torch.equal(written_keys[:, 17], k[:, :, 0].half())
    else:
        torch.testing.assert_close(rotated, q[:, :, 0].half(), rtol=2**-9, atol=1e-5)
        torch.testing.assert_close(written_keys[:, 17], k[:, :, 0].half(), rtol=2**-9, atol=1e-5)
    assert torch.equal(written_values[:, 17], value.view(rows, kv_heads, dim))
    others = torch.arange(positions) != 17
    assert torch.equal(written_keys[:, others], keys[:, others])
    assert torch.equal(written_values[:, others], values[:, others])


@pytest.mark.parametrize(("heads", "kv_heads", "dim"), [(8, 2, 32), (4, 4, 16)])
def test_decode_attention_reads_what_masked_sdpa_reads_whole_or_split(
    kernels: Any, heads: int, kv_heads: int, dim: int
) -> None:
    """Against an fp32 SDPA call over the filled positions: at the first position, at block edges and at the last;
    whole, and split into parts (some of them past the filled positions, so empty)."""
    rows, positions, block = 2, 150, 32
    keys, values = cache(rows, positions, kv_heads, dim)
    query = torch.randn(rows, heads, dim, generator=torch.Generator().manual_seed(2)).half()
    position = torch.tensor(0)
    for at in (0, 31, 32, 100, positions - 1):
        position.fill_(at)
        expected = masked_sdpa(query.unsqueeze(2), keys, values, at, 0.2)
        for splits in (1, 2, 3, 16):
            out = kernels.decode_attention(query, keys, values, position, 0.2, splits, block=block)
            assert out.shape == (rows, 1, heads * dim) and out.dtype == torch.float16
            assert (out.float() - expected).abs().max() < 2e-3, (at, splits)


def test_decode_kernels_refuse_what_they_cannot_read() -> None:
    """Checked before any kernel is built (so without Triton too)."""
    from voxplug_voxtral.decode_kernels import decode_attention, rope_append

    keys, values = cache(2, 16, 2, 16)
    query = torch.zeros(2, 4, 16, dtype=torch.float16)
    position = torch.tensor(3)
    with pytest.raises(ValueError, match="keys and values: expected one shape"):
        decode_attention(query, keys, values[:, :8], position, 1.0)
    with pytest.raises(ValueError, match="query: expected contiguous"):
        decode_attention(query.float(), keys, values, position, 1.0)
    with pytest.raises(ValueError, match="query: expected contiguous"):
        decode_attention(torch.zeros(2, 3, 16, dtype=torch.float16), keys, values, position, 1.0)
    with pytest.raises(ValueError, match="splits: expected 1 to 16, got 32"):
        decode_attention(query, keys, values, position, 1.0, splits=32)
    projected = torch.zeros(2, 1, 64, dtype=torch.float16)
    rotary = torch.zeros(1, 1, 16, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"key: expected \(2, 1, 32\) torch.float16 with unit stride"):
        rope_append(projected, projected[..., :32].float(), projected[..., :32], rotary, rotary, keys, values, position)
    with pytest.raises(ValueError, match=r"value: expected \(2, 1, 32\)"):
        rope_append(projected, projected[..., :32], projected[..., :16], rotary, rotary, keys, values, position)
    with pytest.raises(ValueError, match="tile 48x4x2: expected a block that is a power of two from 16"):
        decode_attention(query, keys, values, position, 1.0, block=48)
    with pytest.raises(ValueError, match="cos and sin: expected one position's 16 values"):
        rope_append(
            projected, projected[..., :32], projected[..., :32], rotary.repeat(1, 2, 1), rotary, keys, values, position
        )
    with pytest.raises(ValueError, match="cos and sin: expected torch.float16 or float32"):
        rope_append(
            projected,
            projected[..., :32],
            projected[..., :32],
            rotary.double(),
            rotary.double(),
            keys,
            values,
            position,
        )


@pytest.mark.slow
def test_the_triton_layout_gives_the_tokens_of_the_varlen_layout(
    kernels: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tiny Voxtral in float16 whose steps run the kernels (told that they serve this CPU's cache): the tokens
    of the ``varlen`` layout (SDPA over the filled length here), projections stacked or not."""
    from transformers import AutoProcessor, VoxtralForConditionalGeneration
    from voxplug_voxtral import generation
    from voxplug_voxtral.tiny import build_tiny_voxtral

    folder = build_tiny_voxtral(tmp_path / "voxtral", text_hidden=64)  # 16 wide heads
    model = VoxtralForConditionalGeneration.from_pretrained(folder, dtype=torch.float16).eval()
    processor = AutoProcessor.from_pretrained(folder)
    generator = np.random.default_rng(0)
    audios = [generator.standard_normal(16000 * seconds).astype(np.float32) * 0.1 for seconds in (1, 2, 3, 1)]
    monkeypatch.setattr(kernels, "triton_serves", lambda device, dtype, head_dim: True)
    monkeypatch.setattr(kernels, "attention_splits", lambda *args: 4)  # every step split, and combined
    calls: list[int] = []
    attend = kernels.decode_attention
    monkeypatch.setattr(kernels, "decode_attention", lambda *a, **k: calls.append(1) or attend(*a, **k))

    def tokens(layout: str, **options: Any) -> list[list[int]]:
        attention = generation.StepAttention(layout)
        return generation.transcribe_ids(
            model, processor, audios, [None] * 4, max_new_tokens=10, graph_shapes=True, attention=attention, **options
        )

    varlen = tokens("varlen")
    assert not calls
    assert tokens("triton") == varlen and calls
    assert tokens("triton", stack_projections=True) == varlen

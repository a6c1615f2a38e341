"""The reference a decoding step's attention is tested and benchmarked against."""

from __future__ import annotations

import torch


def masked_sdpa(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, at: int, scale: float) -> torch.Tensor:
    """fp32 SDPA of ``(rows, heads, 1, dim)`` queries over positions up to ``at`` of a position-major cache
    (``(rows, positions, kv heads, dim)``, grouped-query heads shared): ``(rows, 1, heads * dim)``."""
    rows, heads, _, dim = query.shape
    mask = (torch.arange(keys.shape[1], device=keys.device) <= at).view(1, 1, 1, -1)
    return torch.nn.functional.scaled_dot_product_attention(
        query.float(),
        keys.transpose(1, 2).float(),
        values.transpose(1, 2).float(),
        attn_mask=mask,
        scale=scale,
        enable_gqa=True,
    ).reshape(rows, 1, heads * dim)

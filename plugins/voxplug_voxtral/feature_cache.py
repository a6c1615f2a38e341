"""Reuse each clip's prompt and mel features across epochs.

Voxtral pads every clip to 30 s before computing 128 x 3000 mel features, which costs about as much CPU time
per clip as a training step of a small model. A personal dataset of a few dozen clips is seen for many epochs,
so the collator keeps each clip's prompt ids and feature chunks (keyed by the audio's content and language),
up to a memory budget. Caching stops when the budget is full; nothing is evicted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from voxplug_voxtral.collator import VoxtralBatchBuilder

if TYPE_CHECKING:
    import torch

CHUNK_TOKENS = 375  # [AUDIO] tokens per 30 s chunk of mel features


def clip_key(audio: Any, language: str | None) -> tuple[str, str | None]:
    """A key for one clip: a hash of its samples, and its language (which changes the prompt)."""
    return hashlib.blake2b(audio.tobytes(), digest_size=16).hexdigest(), language


class CachingVoxtralBatchBuilder(VoxtralBatchBuilder):
    """:class:`VoxtralBatchBuilder` that computes each clip's prompt and features once."""

    def __init__(self, processor: Any, *, cache_bytes: int, **kwargs: Any) -> None:
        super().__init__(processor, **kwargs)
        self.cache_bytes = cache_bytes
        self.cached_bytes = 0
        self._cache: dict[tuple[str, str | None], tuple[list[int], torch.Tensor]] = {}
        self._audio_token_id = getattr(processor, "audio_token_id", 24)

    def encode_prompts(self, rows: Sequence[Mapping[str, Any]]) -> tuple[list[list[int]], torch.Tensor]:
        """Prompt ids and stacked features of every row, computing only the rows not seen before."""
        import numpy as np
        import torch

        if not all(isinstance(row.get("audio"), np.ndarray) for row in rows):
            return super().encode_prompts(rows)  # it names the bad row
        keys = [clip_key(row["audio"], row.get("language")) for row in rows]
        missing = [index for index, key in enumerate(keys) if key not in self._cache]
        computed = dict(zip(missing, self._encode_rows([rows[i] for i in missing]), strict=True))
        for index, entry in computed.items():
            self._remember(keys[index], entry)
        entries = [computed[index] if index in computed else self._cache[key] for index, key in enumerate(keys)]
        return [prompt for prompt, _ in entries], torch.cat([features for _, features in entries])

    def _encode_rows(self, rows: list[Mapping[str, Any]]) -> list[tuple[list[int], torch.Tensor]]:
        """Encode rows in one processor call and split the stacked features back into each row's chunks."""
        if not rows:
            return []
        prompts, features = super().encode_prompts(rows)
        entries, start = [], 0
        for prompt in prompts:
            chunks = sum(token == self._audio_token_id for token in prompt) // CHUNK_TOKENS
            entries.append((prompt, features[start : start + chunks].clone()))
            start += chunks
        return entries

    def _remember(self, key: tuple[str, str | None], entry: tuple[list[int], torch.Tensor]) -> None:
        size = entry[1].numel() * entry[1].element_size()
        if self.cached_bytes + size <= self.cache_bytes:
            self._cache[key] = entry
            self.cached_bytes += size

"""Reuse a frozen audio encoder's outputs across epochs.

When the audio encoder is frozen and runs without autograd (:func:`voxplug.training.freezing.freeze_without_grad`),
its output for a clip is the same in every epoch. Voxtral's encoder is about a quarter of a LoRA step's FLOPs
(32 Whisper layers over 1500 frames per 30 s chunk), so epochs 2 and later can skip it.

:func:`cache_encoder_outputs` wraps the encoder's ``forward``: each row of ``input_features`` is fingerprinted on
its device (two 64-bit multiplicative hashes of the exact bits, so an identical clip always hits and a changed one
never does), rows seen before are served from memory, and only new rows run through the encoder. Outputs stay on
the encoder's device until the memory budget is full; nothing is evicted.

The cache steps aside (calls the encoder) whenever its answer could differ from the encoder's: dropout or layer drop
active in training mode, extra arguments (attention masks, hidden states or attentions asked for), or parameters that
train. Keywords that leave the output alone (:data:`OUTPUT_NEUTRAL_KEYWORDS`, such as the Trainer's
``num_items_in_batch``, which ``WhisperModel`` hands on to its encoder) do not count as extra arguments.
It is never used under DeepSpeed ZeRO-3, where skipping a forward pass on one rank would desynchronise the
parameter gathers of all ranks.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("voxplug.training")

_CACHE_ATTRIBUTE = "_voxplug_encoder_cache"
_HASH_SEED = 0x5EED
_BITS_DTYPES = {1: "int8", 2: "int16", 4: "int32", 8: "int64"}
#: Keywords an encoder call may carry that never change its output: the Trainer's token count for the loss, which
#: transformers' ``TransformersKwargs`` pass down through every module.
OUTPUT_NEUTRAL_KEYWORDS = frozenset({"num_items_in_batch"})


@dataclass
class EncoderOutputCache:
    """The cache on one encoder module, with its counters (see :func:`cache_encoder_outputs`)."""

    budget_bytes: int
    cached_bytes: int = 0
    hits: int = 0
    misses: int = 0
    bypassed_calls: int = 0
    _outputs: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)
    _weights: dict[tuple[int, str], Any] = field(default_factory=dict, repr=False)
    _output_type: Any = field(default=None, repr=False)

    def stats(self) -> dict[str, Any]:
        """``hits`` / ``misses`` (rows), ``bypassed_calls``, ``rows`` and ``cached_gib`` held."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "bypassed_calls": self.bypassed_calls,
            "rows": len(self._outputs),
            "cached_gib": round(self.cached_bytes / 2**30, 3),
            "budget_gib": round(self.budget_bytes / 2**30, 3),
        }

    def keys(self, features: Any) -> list[tuple[Any, ...]]:
        """One key per row of ``features``: its shape, dtype, the autocast state and two hashes of its exact bits."""
        import torch

        rows = features.shape[0]
        flat = features.detach().contiguous().reshape(rows, -1)
        bits = flat.view(getattr(torch, _BITS_DTYPES[flat.element_size()])).to(torch.int64)
        weights = self._hash_weights(bits.shape[1], bits.device)
        # Integer products and sums wrap modulo 2**64: exact and independent of summation order. Odd weights
        # make any single changed element change the hash.
        hashes = torch.stack([(bits * weights[0]).sum(dim=1), (bits * weights[1]).sum(dim=1)], dim=1).tolist()
        signature = (tuple(features.shape[1:]), str(features.dtype), _autocast_state(features.device.type))
        return [(*signature, first, second) for first, second in hashes]

    def _hash_weights(self, length: int, device: Any) -> Any:
        import torch

        key = (length, str(device))
        if key not in self._weights:
            generator = torch.Generator().manual_seed(_HASH_SEED)
            weights = torch.randint(-(2**62), 2**62, (2, length), generator=generator, dtype=torch.int64) * 2 + 1
            self._weights[key] = weights.to(device)
        return self._weights[key]

    def forward(self, encoder_forward: Any, features: Any) -> Any:
        """The encoder's output for ``features``, running the encoder only on rows not cached."""
        import torch

        keys = self.keys(features)
        missing = [index for index, key in enumerate(keys) if key not in self._outputs]
        fresh: dict[int, Any] = {}
        if missing:
            self.misses += len(missing)
            output = encoder_forward(features[missing] if len(missing) < len(keys) else features, return_dict=True)
            self._output_type = type(output)
            for position, index in enumerate(missing):
                fresh[index] = output.last_hidden_state[position]
                self._remember(keys[index], fresh[index])
            if len(missing) == len(keys):
                return output
        self.hits += len(keys) - len(missing)
        hidden = torch.stack([fresh[index] if index in fresh else self._outputs[key] for index, key in enumerate(keys)])
        return self._wrap(hidden)

    def _remember(self, key: tuple[Any, ...], row: Any) -> None:
        size = row.numel() * row.element_size()
        if self.cached_bytes + size <= self.budget_bytes and has_headroom(row.device, size):
            self._outputs[key] = row.detach().clone()
            self.cached_bytes += size

    def _wrap(self, hidden: Any) -> Any:
        from transformers.modeling_outputs import BaseModelOutput

        return (self._output_type or BaseModelOutput)(last_hidden_state=hidden)


#: GPU memory the cache always leaves to training: a full fine-tune of Voxtral Mini peaks at ~71 of 80 GB.
HEADROOM_BYTES = 6 * 2**30


def has_headroom(device: Any, size: int) -> bool:
    """Whether ``size`` more bytes on ``device`` keep the run's peak :data:`HEADROOM_BYTES` under the card's memory.

    The peak so far (``max_memory_allocated``) already holds the training step's activations, which the encoder
    call that stores an output comes before; what is free at that moment is not. The card's memory is what this
    process may allocate: a per-process cap (``torch.cuda.set_per_process_memory_fraction``) counts as a smaller
    card. Always True off CUDA.
    """
    import torch

    if device.type != "cuda":
        return True
    _free, total = torch.cuda.mem_get_info(device)
    cap = getattr(torch.cuda, "get_per_process_memory_fraction", None)  # not in older torch releases
    total = int(total * cap(device)) if cap is not None else total
    return torch.cuda.max_memory_allocated(device) + size + HEADROOM_BYTES <= total


def cache_encoder_outputs(module: Any, budget_bytes: int) -> EncoderOutputCache:
    """Serve ``module``'s repeated inputs from memory, up to ``budget_bytes``; idempotent, returns the cache.

    ``module`` must be a frozen encoder whose forward takes ``input_features`` of shape ``(rows, ...)`` and returns
    a model output with ``last_hidden_state`` of shape ``(rows, ...)`` (Voxtral's and Whisper's encoders).
    """
    existing = getattr(module, _CACHE_ATTRIBUTE, None)
    if existing is not None:
        return existing
    cache = EncoderOutputCache(budget_bytes=budget_bytes)
    original_forward = module.forward

    @functools.wraps(original_forward)
    def forward(*args: Any, **kwargs: Any) -> Any:
        features = args[0] if args else kwargs.pop("input_features", None)
        rest = args[1:]
        if features is None or rest or not _plain_call(kwargs) or not _deterministic(module):
            cache.bypassed_calls += 1
            return original_forward(*args, **kwargs) if args else original_forward(input_features=features, **kwargs)
        output = cache.forward(original_forward, features)
        if kwargs.get("return_dict") is False:
            return (output.last_hidden_state,)
        return output

    module.forward = forward
    setattr(module, _CACHE_ATTRIBUTE, cache)
    return cache


def cache_frozen_encoder(family: Any, model: Any, budget_gb: float) -> EncoderOutputCache | None:
    """Cache the outputs of ``family``'s encoder in ``model`` (``training.encoder_cache_gb``) where that is exact.

    Returns None (and changes nothing) for a zero budget, an encoder that trains or runs with autograd, or under
    DeepSpeed ZeRO-3.
    """
    from transformers.integrations import is_deepspeed_zero3_enabled

    from voxplug.training.freezing import is_frozen_without_grad

    budget = int(budget_gb * 2**30)
    encoder = family.frozen_encoder(model)
    if budget == 0 or encoder is None or not is_frozen_without_grad(encoder) or is_deepspeed_zero3_enabled():
        return None
    return cache_encoder_outputs(encoder, budget)


def encoder_cache_of(module: Any) -> EncoderOutputCache | None:
    """The cache :func:`cache_encoder_outputs` put on ``module``, if any."""
    return getattr(module, _CACHE_ATTRIBUTE, None) if module is not None else None


def _autocast_state(device_type: str) -> str | None:
    """The autocast dtype in force on ``device_type``, or None: it changes the encoder's output (its dtype at least)."""
    import torch

    if not torch.is_autocast_enabled(device_type):
        return None
    return str(torch.get_autocast_dtype(device_type))


def _plain_call(kwargs: dict[str, Any]) -> bool:
    """Only ``return_dict``, output-neutral keywords and arguments left at None/False: nothing that changes or
    enlarges the output."""
    return all(
        key == "return_dict" or key in OUTPUT_NEUTRAL_KEYWORDS or value is None or value is False
        for key, value in kwargs.items()
    )


def _deterministic(module: Any) -> bool:
    """No trainable parameter, and no dropout or layer drop that would act (module in training mode with a non-zero
    rate)."""
    if any(parameter.requires_grad for parameter in module.parameters()):
        return False
    if not module.training:
        return True
    config = getattr(module, "config", None)
    rates = [getattr(config, name, 0.0) or 0.0 for name in ("dropout", "attention_dropout", "activation_dropout")]
    rates += [getattr(sub, "p", 0.0) for sub in module.modules() if type(sub).__name__.startswith("Dropout")]
    rates.append(getattr(module, "layerdrop", 0.0) or 0.0)  # Whisper's encoder skips whole layers at random
    return all(rate == 0 for rate in rates)

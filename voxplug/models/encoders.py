"""The layout of a Whisper-style audio encoder's residual stream.

transformers' Whisper and Voxtral encoders run two convolutions over the mel features, ``(batch, channels, frames)``,
permute the result to ``(batch, frames, channels)`` and add the positions to that view. The sum keeps the transposed
strides, and so does every residual add after it: each layer's two adds then run as strided, unvectorized kernels,
and each layer norm copies its input first. One copy before the first layer gives every later kernel a contiguous
tensor. The values are the same where the norms are LayerNorms (they copy their input anyway); an RMSNorm written
as a mean over the last axis (Voxtral Realtime's) sums in another order, so its output differs by rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_HOOKED = "_voxplug_contiguous_stream"


def contiguous_residual_stream(encoder: Any) -> Any | None:
    """Give ``encoder``'s first layer its input as a contiguous tensor from now on (a forward pre-hook).

    ``encoder`` is a module with ``layers`` that takes the hidden states as its first argument (Whisper's,
    Voxtral's and Voxtral Realtime's encoders). Returns the hook's handle, or None where the encoder already has
    the hook or has no layers.
    """
    layers = getattr(encoder, "layers", None)
    if not layers or getattr(layers[0], _HOOKED, False):
        return None
    first = layers[0]
    handle = first.register_forward_pre_hook(_contiguous_first_argument)
    setattr(first, _HOOKED, True)
    return _Handle(first, handle)


@contextlib.contextmanager
def contiguous_residual_stream_while(encoder: Any) -> Iterator[None]:
    """:func:`contiguous_residual_stream` for the block only (left as it was where the encoder already had it)."""
    handle = contiguous_residual_stream(encoder)
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


def _contiguous_first_argument(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if not args or not hasattr(args[0], "is_contiguous") or args[0].is_contiguous():
        return None
    return (args[0].contiguous(), *args[1:])


class _Handle:
    """The hook's handle; removing it also clears the layer's mark."""

    def __init__(self, layer: Any, handle: Any) -> None:
        self.layer, self.handle = layer, handle

    def remove(self) -> None:
        self.handle.remove()
        setattr(self.layer, _HOOKED, False)

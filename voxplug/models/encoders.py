"""The layout of a Whisper-style audio encoder's residual stream.

transformers' Whisper, Voxtral and Voxtral Realtime encoders run two convolutions over the mel features, ``(batch,
channels, frames)``, and permute the result to ``(batch, frames, channels)``. An elementwise op keeps its first
operand's strides, so the position sum and every residual add after it stay transposed: each layer's adds run as
strided, unvectorized kernels, and each norm copies its input first or works on the strided layout. One copy before
the first layer gives every later kernel a contiguous tensor. The values are the same where the norms are LayerNorms
(Whisper, Voxtral: they copy their input anyway); with Voxtral Realtime's RMSNorms the reductions and projections
read the other layout, so its output differs by rounding.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_USES = "_voxplug_contiguous_stream"
_lock = threading.Lock()


@dataclass
class _Uses:
    """The hook on one encoder's first layer and who wants it: the model's loader for good (``kept``), running
    transcriptions for their calls (``calls``)."""

    handle: Any
    kept: bool = False
    calls: int = 0


def contiguous_residual_stream(encoder: Any) -> None:
    """Give ``encoder``'s first layer its input as a contiguous tensor from now on (a forward pre-hook, added once).

    ``encoder`` is a module with ``layers`` that takes the hidden states as its first argument (Whisper's,
    Voxtral's and Voxtral Realtime's encoders); one without layers is left alone. A layer skipped by LayerDrop in
    training leaves that step's stream as transformers lays it out.
    """
    first = _first_layer(encoder)
    if first is not None:
        with _lock:
            _uses(first).kept = True


@contextlib.contextmanager
def contiguous_residual_stream_while(encoder: Any) -> Iterator[None]:
    """:func:`contiguous_residual_stream` for the block only: the hook goes when the last of overlapping blocks
    leaves, and stays where the model's loader added it."""
    first = _first_layer(encoder)
    if first is not None:
        with _lock:
            _uses(first).calls += 1
    try:
        yield
    finally:
        if first is not None:
            with _lock:
                uses = _uses(first)
                uses.calls -= 1
                if not uses.kept and uses.calls == 0:
                    uses.handle.remove()
                    setattr(first, _USES, None)


def has_contiguous_residual_stream(encoder: Any) -> bool:
    """Whether ``encoder``'s first layer has the hook now."""
    first = _first_layer(encoder)
    return first is not None and getattr(first, _USES, None) is not None


def _first_layer(encoder: Any) -> Any | None:
    layers = getattr(encoder, "layers", None)
    return layers[0] if layers else None


def _uses(layer: Any) -> _Uses:
    """``layer``'s record, the hook registered with it the first time (the caller holds the lock)."""
    uses = getattr(layer, _USES, None)
    if uses is None:
        uses = _Uses(layer.register_forward_pre_hook(_contiguous_first_argument))
        setattr(layer, _USES, uses)
    return uses


def _contiguous_first_argument(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if not args or not hasattr(args[0], "is_contiguous") or args[0].is_contiguous():
        return None
    return (args[0].contiguous(), *args[1:])

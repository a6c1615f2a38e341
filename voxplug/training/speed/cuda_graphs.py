"""CUDA graphs of a stack of layers' forward and backward: LoRA training without the host in the way.

Eager LoRA training of Voxtral-Mini is bound by the host: Python, autograd and over a thousand matmul launches a
step keep the GPU waiting (measurements in benchmarks/NOTES.md). A CUDA graph records a pass's
kernels once and replays them with one launch, so the host's work for the whole stack of decoder layers becomes
two replays a step, whatever the host's speed.

A graph is fixed to its inputs' shapes and to the addresses of everything it reads, so :class:`LayerGraphs` keeps one
forward and one backward graph per input signature (shapes, dtypes, autocast): a signature's first batch is captured
(:data:`EAGER_SIGHTINGS` says how many run eagerly first) and every later one replays. All graphs share one memory
pool: they run one at a time, each backward right after its forward, so one shape's activations may live where
another's did. The gradients of the trainable parameters leave the graph in its own buffers; autograd copies them
into ``.grad`` (it never adopts a buffer that something else holds), so gradient accumulation and the optimizer see
ordinary tensors.

A capture costs the host about three replays' worth of time (:data:`CAPTURE_COST`), and a run meets many padded
lengths, most of them a few times. So where the layers allow it (``pad_dims``: a causal stack, whose positions never
see later ones and whose rows never see each other), a batch of a new shape is zero-padded up to the smallest shape
already captured that holds it, replayed there, and its output cut back: the real positions compute what they would
have, and the padding's gradients are zero. Padding wastes the covering graph's work beyond the batch's, so each
shape keeps the sum of what its padded replays wasted, and is captured once that sum would reach a capture's cost
(the ski-rental rule: never more than twice the cost of the best choice made knowing the future).

What the layers must allow: no host-device synchronisation and no data-dependent Python inside them, and
parameters that stay where they are. No autograd graph through the parameters may be alive at a capture (a loss
kept from an earlier step, say): autograd would then wait across streams and break the capture. The Trainer
keeps none. Moved or reallocated parameters (``model.to(...)``) are noticed at the next call, which drops every
graph and starts over; replaced parameter objects are not. A capture that fails (an operation graphs cannot hold,
lazy initialisation inside the capture, too little memory) turns graphs off for the rest of the run, with a
warning, and the layers run eagerly as before.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from voxplug.evaluation.decoding import recording

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

log = logging.getLogger("voxplug.training")

#: Batches of one input signature that run eagerly before it is captured. 0: its first batch is captured, which
#: then also settles cuDNN's and cuBLAS's per-shape choices inside the capture.
EAGER_SIGHTINGS = 0
#: Most signatures captured in one run; later new ones run eagerly. They share memory, but each graph holds its
#: static inputs and outputs and its kernels' parameters.
MAX_GRAPHS = 32
#: What capturing a new shape costs, in replays of its graphs (measured for Voxtral-Mini's decoder layers, forward
#: and backward; benchmarks/NOTES.md). 0 captures every shape (never pads).
CAPTURE_COST = 3.0


@dataclass
class _Captured:
    """One signature's graphs and the tensors they read and write."""

    forward: Any  # torch.cuda.CUDAGraph
    backward: Any
    inputs: tuple[torch.Tensor, ...]
    output: torch.Tensor
    grad_output: torch.Tensor
    grads: tuple[torch.Tensor | None, ...]  # of the inputs that require grad, then of every trainable parameter


class LayerGraphs:
    """Run ``run(*inputs) -> tensor`` (the forward of ``modules``) as replayed CUDA graphs, forward and backward.

    Call it with the inputs; it returns the output, or None where the caller must run the layers eagerly (no CUDA
    inputs, autograd off, an eager sighting, graphs turned off by a failed capture). :meth:`stats` counts what it
    did.

    ``pad_dims`` (one entry per input: the dimensions that may be zero-padded at their end) allows padding a batch
    into a larger captured shape. It promises that the output has the first input's shape, and that padding along
    those dimensions leaves the output's unpadded part as it was: true of causal decoder layers padded along the
    batch and the sequence (with their rotary tables padded along the sequence). ``capture_cost`` is what a capture
    costs in replays (:data:`CAPTURE_COST`).
    """

    def __init__(
        self,
        modules: Sequence[torch.nn.Module],
        run: Callable[..., torch.Tensor],
        *,
        pad_dims: Sequence[Sequence[int]] | None = None,
        capture_cost: float = CAPTURE_COST,
        eager_sightings: int = EAGER_SIGHTINGS,
        max_graphs: int = MAX_GRAPHS,
    ) -> None:
        self.modules = list(modules)
        self.run = run
        self.pad_dims = None if pad_dims is None else tuple(tuple(dims) for dims in pad_dims)
        self.capture_cost = capture_cost
        self.eager_sightings = eager_sightings
        self.max_graphs = max_graphs
        self.enabled = True
        self.captures = 0
        self.replays = 0
        self.padded_replays = 0
        self._elements = 0  # of the first input, over every replay, padding included
        self._padding = 0  # of which padding
        self._seen: Counter[tuple[Any, ...]] = Counter()
        self._waste: defaultdict[tuple[Any, ...], float] = defaultdict(float)
        self._graphs: dict[tuple[Any, ...], _Captured] = {}
        self._pool: Any = None
        self._stream: Any = None
        self._tensors: list[torch.Tensor] = []
        self._trainable: list[torch.Tensor] = []
        self._placement: list[tuple[int, bool]] = []

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor | None:
        if not (self.enabled and torch.is_grad_enabled() and all(t.is_cuda for t in inputs)):
            return None
        if torch.cuda.is_current_stream_capturing():
            return None
        if self._graphs and self._placement != self._current_placement():
            log.info("CUDA graphs: the layers' parameters moved; capturing again")
            self.release()
        key = _signature(inputs)
        action, captured = self._plan(key, inputs[0].numel())
        if action == "eager":
            return None
        if action == "pad":
            return self._replay_padded(captured, inputs)
        if action == "capture":
            captured = self._capture_or_turn_off(key, inputs)
            if captured is None:
                return None
        self.replays += 1
        self._elements += inputs[0].numel()
        return _Replay.apply(captured, *inputs, *self._trainable)

    def _plan(self, key: tuple[Any, ...], elements: int) -> tuple[str, Any]:
        """What to do with a batch of signature ``key`` whose first input has ``elements`` elements: ``("replay",
        its graphs)``, ``("pad", the covering graphs)``, ``("capture", None)`` or ``("eager", None)``."""
        captured = self._graphs.get(key)
        if captured is not None:
            return "replay", captured
        full = len(self._graphs) >= self.max_graphs
        cover = self._cover(key)
        if cover is not None:
            waste = 1 - elements / cover.inputs[0].numel()
            if self._waste[key] + waste < self.capture_cost or full:
                self._waste[key] += waste
                return "pad", cover
        self._seen[key] += 1
        if self._seen[key] <= self.eager_sightings or full:
            return "eager", None
        return "capture", None

    def stats(self) -> dict[str, Any]:
        """What the graphs did: ``{"enabled", "captures", "replays", "padded_replays", "padding",
        "failed_captures"}``; ``padding`` is the share of the replayed first inputs' elements that were padding."""
        return {
            "enabled": self.enabled,
            "captures": self.captures,
            "replays": self.replays,
            "padded_replays": self.padded_replays,
            "padding": round(self._padding / self._elements, 4) if self._elements else 0.0,
            "failed_captures": int(not self.enabled),  # graphs are only ever turned off by a failed capture
        }

    def release(self) -> None:
        """Drop every graph and its memory (evaluation and generation then have it); later batches capture again."""
        self._graphs.clear()
        self._seen.clear()
        self._waste.clear()
        self._pool = None

    def _cover(self, key: tuple[Any, ...]) -> _Captured | None:
        """The captured graph with the fewest elements whose inputs hold ``key``'s once padded, if any."""
        if self.pad_dims is None:
            return None
        covers = [
            (captured.inputs[0].numel(), captured)
            for captured_key, captured in self._graphs.items()
            if _holds(captured_key, key, self.pad_dims)
        ]
        return min(covers, key=lambda pair: pair[0])[1] if covers else None

    def _replay_padded(self, captured: _Captured, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Zero-pad ``inputs`` to ``captured``'s shapes, replay, and cut the output back to the first input's shape
        (autograd pads and cuts the gradients the other way: the padding's are zero)."""
        padded = tuple(_padded(t, static.shape) for t, static in zip(inputs, captured.inputs, strict=True))
        self.replays += 1
        self.padded_replays += 1
        self._elements += captured.inputs[0].numel()
        self._padding += captured.inputs[0].numel() - inputs[0].numel()
        output = _Replay.apply(captured, *padded, *self._trainable)
        return output[tuple(slice(0, size) for size in inputs[0].shape)]

    def _current_placement(self) -> list[tuple[int, bool]]:
        return [(t.data_ptr(), t.requires_grad) for t in self._tensors]

    def _capture_or_turn_off(self, key: tuple[Any, ...], inputs: tuple[torch.Tensor, ...]) -> _Captured | None:
        try:
            captured = self._capture(inputs)
        except Exception as exc:  # any failure leaves the eager layers, as without graphs
            # A capture after a failed one fails too ("operation failed due to a previous error during capture"),
            # even on a fresh stream and pool, so one failure is final.
            self.enabled = False
            self.release()
            log.warning(
                "CUDA graphs turned off for this run, the layers run eagerly: the capture failed (%s)",
                str(exc).splitlines()[0],
            )
            return None
        self._graphs[key] = captured
        self.captures += 1
        return captured

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> _Captured:
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
            self._stream = torch.cuda.Stream()
            self._tensors = [t for module in self.modules for t in (*module.parameters(), *module.buffers())]
            self._trainable = [p for module in self.modules for p in module.parameters() if p.requires_grad]
            self._placement = self._current_placement()
        static = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in inputs)
        wanted = [t for t in static if t.requires_grad] + self._trainable
        forward, backward = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        # graphs cannot hold autocast's cache of cast weights (its tensors would outlive the capture)
        device_type = "cuda"
        with torch.autocast(
            device_type,
            dtype=torch.get_autocast_dtype(device_type),
            enabled=torch.is_autocast_enabled(device_type),
            cache_enabled=False,
        ):
            with recording(forward, self._stream, self._pool):
                output = self.run(*static)
            grad_output = torch.empty_like(output)
            with recording(backward, self._stream, self._pool):
                grads = torch.autograd.grad(output, wanted, grad_output, allow_unused=True)
        return _Captured(forward, backward, static, output.detach(), grad_output, tuple(grads))


def _signature(inputs: tuple[torch.Tensor, ...]) -> tuple[Any, ...]:
    autocast = (torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
    return (*((tuple(t.shape), t.dtype, t.device, t.requires_grad) for t in inputs), autocast)


def _holds(larger: tuple[Any, ...], smaller: tuple[Any, ...], pad_dims: tuple[tuple[int, ...], ...]) -> bool:
    """Whether inputs of signature ``smaller``, zero-padded along ``pad_dims``, have signature ``larger``."""
    if len(larger) != len(smaller) or larger[-1] != smaller[-1]:  # the same inputs, the same autocast
        return False
    for (big, *big_rest), (small, *small_rest), dims in zip(larger[:-1], smaller[:-1], pad_dims, strict=True):
        if big_rest != small_rest or len(big) != len(small):
            return False
        if any(b < s if d in dims else b != s for d, (b, s) in enumerate(zip(big, small, strict=True))):
            return False
    return True


def _padded(tensor: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``tensor`` zero-padded at the end of each dimension to ``shape`` (itself where it has that shape)."""
    if tuple(tensor.shape) == tuple(shape):
        return tensor
    widths = [width for dim in reversed(range(tensor.dim())) for width in (0, shape[dim] - tensor.shape[dim])]
    return torch.nn.functional.pad(tensor, widths)


class _Replay(torch.autograd.Function):
    """Copy the inputs in and replay the forward graph; on backward, copy the gradient in and replay the other."""

    @staticmethod
    def forward(ctx: Any, captured: _Captured, *tensors: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for static, given in zip(captured.inputs, tensors[: len(captured.inputs)], strict=True):
            static.copy_(given)
        captured.forward.replay()
        ctx.captured = captured
        return captured.output.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor | None) -> tuple[Any, ...]:  # type: ignore[override]
        captured = ctx.captured
        wanted = [t.requires_grad for t in captured.inputs]
        if grad is None:
            return (None, *(None for _ in wanted), *(None for _ in captured.grads[sum(wanted) :]))
        captured.grad_output.copy_(grad)
        captured.backward.replay()
        # the graph's own buffers: autograd copies them into .grad (they are held here, so never adopted)
        grads = iter(captured.grads)
        return (None, *(next(grads) if w else None for w in wanted), *grads)

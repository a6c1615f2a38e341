"""Greedy decoding over a static key/value cache, one token a step, with the step replayed as a CUDA graph.

A model family supplies a :class:`DecodeState`: its key/value buffers, preallocated for a number of rows and
positions, and ``step``, one decoder pass for one new token per row. :class:`GreedyDecoder` runs the loop that
every family shares: pick the highest-scoring token, stop a row at an end-of-sequence token or at its own token
budget, and stop the batch when every row has stopped.

On a CUDA device each step is a CUDA graph: the host replays one launch where an eager step queues a thousand
small kernels, so the step costs what the GPU needs to read the weights and the cache, not what the host needs to
queue it. Everything the step reads and writes (the token ids, the position, the per-row budgets and the cache)
lives in buffers allocated once, and the step changes them in place, so the host only replays and, every few steps,
reads which rows have finished. A graph is fixed to a number of rows and to the length of cache that attention
reads (the *span*, rounded up to :data:`SPAN_STEP` positions); a new shape is run eagerly once, which is a real
step, and captured for the next ones. A capture that fails turns graphs off for the rest of the call.

Rows that finish leave the batch: the rows still running are moved to the front of every buffer and the step runs
on fewer rows (on CUDA, when that saves at least a quarter of them: each row count is a graph; on the CPU, as soon
as one row finishes). Attention reads only the span of the cache, not its whole length.

Under DeepSpeed ZeRO-3 every forward pass gathers the weights from every rank, so all ranks must run the same
number of steps: :class:`RankSync` makes them agree, and steps run eagerly (a graph cannot hold the gathers).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

log = logging.getLogger("voxplug.evaluation")

#: Attention reads the cache up to the current position rounded up to this many positions (one graph per span).
SPAN_STEP = 64
#: On CUDA, the host reads which rows have finished every this many steps (each read waits for the GPU).
CHECK_EVERY_CUDA = 8
#: Most graphs one decoder keeps; later new shapes run eagerly.
MAX_GRAPHS = 64
#: On CUDA, finished rows leave the batch once the smaller batch has at most this share of the rows.
SHRINK_AT = 0.75
#: The profiler range every decoding step runs in (the prompt pass runs outside it).
STEP_RANGE = "voxplug::decode_step"


class DecodeState(Protocol):
    """A family's key/value buffers for ``rows`` x ``positions`` and its one-token decoder step."""

    rows: int
    positions: int
    device: torch.device

    def step(self, ids: torch.Tensor, position: torch.Tensor, span: int, mask: torch.Tensor | None) -> torch.Tensor:
        """Logits (float32, ``(rows, vocab)``) of the next token after ``ids`` (``(rows, 1)``) at ``position``.

        Writes the new keys and values at ``position`` (a 0-dim device tensor) and attends to the first ``span``
        positions of the cache; ``mask`` (``(1, 1, 1, span)``, True where attended) is None when ``span`` is
        exactly ``position + 1``, or always where the state's ``reads_lengths`` is true (it attends up to
        ``position`` by itself; in graph shapes ``span`` is then its whole length). Must not synchronise with the
        host (it may be captured in a CUDA graph).
        """
        ...

    def move_rows(self, keep: torch.Tensor) -> None:
        """Copy the rows ``keep`` (ascending indices) of every buffer to its first ``len(keep)`` rows."""
        ...


class RankSync:
    """Agreement between ranks that share sharded weights (DeepSpeed ZeRO-3): the same steps and batches on all."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @classmethod
    def if_needed(cls, device: torch.device) -> RankSync | None:
        """A sync object under DeepSpeed ZeRO-3 with several ranks, else None (ranks decode independently)."""
        import torch
        from transformers.integrations import is_deepspeed_zero3_enabled

        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if is_deepspeed_zero3_enabled() and distributed and torch.distributed.get_world_size() > 1:
            return cls(device)
        return None

    def all(self, flag: bool) -> bool:
        """``flag`` and-ed over every rank."""
        return not self.most(int(not flag))

    def most(self, value: int) -> int:
        """The largest ``value`` of all ranks."""
        import torch

        tensor = torch.tensor(value, device=self.device)
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return int(tensor.item())


@dataclass
class DecodeStats:
    """What decoding did, for benchmarks and logs."""

    batches: int = 0
    steps: int = 0
    row_steps: int = 0  # rows computed, summed over steps (filler rows of a graph's row count included)
    tokens: int = 0  # tokens kept in the transcripts (up to and without the end-of-sequence token)
    prefill_s: float = 0.0
    decode_s: float = 0.0
    captures: int = 0
    capture_s: float = 0.0  # host time spent recording graphs, within decode_s (the GPU idles for most of it)
    replays: int = 0
    graphs_failed: bool = False
    rows: int = 0
    positions: int = 0
    notes: list[str] = field(default_factory=list)


class StepGraphs:
    """One CUDA graph per step shape: the first step of a shape runs eagerly and is then captured; later ones
    replay. All graphs share one memory pool: they run one at a time, and each writes its results into the
    decoder's buffers, never into memory of its own."""

    def __init__(self, stats: DecodeStats) -> None:
        self.graphs: dict[tuple[Any, ...], Any] = {}
        self.enabled = True
        self.stats = stats
        self._pool: Any = None
        self._stream: Any = None

    def run(self, key: tuple[Any, ...], advance: Callable[[], None]) -> None:
        """Run ``advance`` (one step, all in place) as the graph of ``key``, capturing it on its first run."""
        graph = self.graphs.get(key)
        if graph is not None:
            graph.replay()
            self.stats.replays += 1
            return
        advance()  # a real step, which also settles the kernels' lazy set-up before the capture
        if self.enabled and len(self.graphs) < MAX_GRAPHS:
            self._capture(key, advance)

    def _capture(self, key: tuple[Any, ...], advance: Callable[[], None]) -> None:
        import torch

        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
            self._stream = torch.cuda.Stream()
        graph = torch.cuda.CUDAGraph()
        started = time.perf_counter()
        try:
            with recording(graph, self._stream, self._pool):
                advance()  # recorded, not run
        except Exception as exc:  # any failure leaves eager steps, as without graphs
            self.enabled = False
            self.stats.graphs_failed = True
            self.graphs.clear()
            log.warning("CUDA graphs turned off for this transcription: the capture failed (%s)", str(exc)[:200])
            return
        self.graphs[key] = graph
        self.stats.captures += 1
        self.stats.capture_s += time.perf_counter() - started


@contextlib.contextmanager
def recording(graph: Any, stream: Any, pool: Any) -> Iterator[None]:
    """Capture ``graph`` on ``stream`` into ``pool``, without ``torch.cuda.graph``'s device synchronisation and
    cache emptying (the capture stream waits for the work queued before it instead); autocast's cache of cast
    weights is off inside (its tensors would outlive the capture). ``thread_local``: other threads (the data
    loader's pinning, a prefetch thread) may allocate meanwhile. After a failed capture the GPUs' random generators
    are renewed (:func:`renew_cuda_generators`)."""
    import torch

    stream.wait_stream(torch.cuda.current_stream())
    autocast = torch.autocast(
        "cuda",
        dtype=torch.get_autocast_dtype("cuda"),
        enabled=torch.is_autocast_enabled("cuda"),
        cache_enabled=False,
    )
    with autocast, torch.cuda.stream(stream):
        graph.capture_begin(pool=pool, capture_error_mode="thread_local")
        try:
            try:
                yield
            finally:
                graph.capture_end()
        except BaseException:
            renew_cuda_generators()
            raise
    torch.cuda.current_stream().wait_stream(stream)


def renew_cuda_generators() -> None:
    """Give each GPU's default random generator a fresh state with the same seed and offset.

    A capture that fails can end without the generator leaving its capturing mode, and its next random draw outside
    a capture (dropout, sampling) then fails with "Offset increment outside graph capture". The fresh state carries
    on the same random stream.
    """
    import torch

    for generator in torch.cuda.default_generators:
        fresh = torch.Generator(device=generator.device)
        fresh.set_state(generator.get_state())
        generator.graphsafe_set_state(fresh)


_unplanned_lock = threading.Lock()
_unplanned_depth = 0
_cudnn_before = True


@contextlib.contextmanager
def unplanned_attention() -> Iterator[None]:
    """SDPA without cuDNN's attention while the block runs, for passes whose sequence lengths seldom repeat (an
    eval-loss batch, a transcription's prompts): cuDNN plans every new length on the host first, while the flash,
    memory-efficient and math kernels run a new length as fast as a seen one; the others stay as they were.

    PyTorch's backend switches are process-wide, so overlapping blocks (the demo's concurrent requests) share one
    switch: the first to enter turns cuDNN off and the last to leave restores what was there before.
    """
    import torch

    global _unplanned_depth, _cudnn_before
    with _unplanned_lock:
        if _unplanned_depth == 0:
            _cudnn_before = torch.backends.cuda.cudnn_sdp_enabled()
            torch.backends.cuda.enable_cudnn_sdp(False)
        _unplanned_depth += 1
    try:
        yield
    finally:
        with _unplanned_lock:
            _unplanned_depth -= 1
            if _unplanned_depth == 0:
                torch.backends.cuda.enable_cudnn_sdp(_cudnn_before)


def base_model(model: Any) -> Any:
    """The transformers model inside a PEFT wrapper (its LoRA layers stay active), or ``model`` itself."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def next_power_of_two(value: int) -> int:
    """The smallest power of two at least ``value`` (1 for 0 or 1)."""
    return 1 << max(0, value - 1).bit_length()


class GreedyDecoder:
    """Greedy decoding of prompt batches whose keys and values a family has put in ``state``.

    ``max_new_tokens`` is the most tokens a row may get (its budget may be smaller). The decoder's own buffers
    (ids, budgets, finished flags, the tokens so far) are allocated once, so its graphs serve every batch.
    """

    def __init__(
        self,
        state: DecodeState,
        *,
        max_new_tokens: int,
        eos_ids: Sequence[int],
        pad_id: int,
        cuda_graphs: bool = True,
        graph_shapes: bool | None = None,
        sync: RankSync | None = None,
        stats: DecodeStats | None = None,
    ) -> None:
        import torch

        self.state = state
        self.sync = sync
        self.stats = stats or DecodeStats()
        device, rows = state.device, state.rows
        # graph shapes: rows in powers of two, spans in SPAN_STEP, checks every CHECK_EVERY_CUDA steps; the
        # CPU takes them only when asked (tests and smoke runs of the GPU path), and runs them eagerly
        self.exact = not (device.type == "cuda" if graph_shapes is None else graph_shapes)
        self.max_new_tokens = max_new_tokens
        self.pad_id = pad_id
        self.ids = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.tokens = torch.full((rows, max(1, max_new_tokens)), pad_id, dtype=torch.long, device=device)
        self.left = torch.zeros(rows, dtype=torch.long, device=device)
        self.finished = torch.ones(rows, dtype=torch.bool, device=device)
        self.position = torch.zeros((), dtype=torch.long, device=device)
        self.column = torch.zeros(1, dtype=torch.long, device=device)
        self.eos = torch.tensor(list(eos_ids), dtype=torch.long, device=device)
        self.pad = torch.tensor(pad_id, dtype=torch.long, device=device)
        self.arange = torch.arange(state.positions, device=device)
        self.reads_lengths = bool(getattr(state, "reads_lengths", False))
        use_graphs = cuda_graphs and device.type == "cuda" and not self.exact and sync is None
        self.graphs = StepGraphs(self.stats) if use_graphs else None

    def decode(self, first_ids: torch.Tensor, prompt_length: int, budgets: Sequence[int]) -> list[list[int]]:
        """Decode the rows whose prompts (``prompt_length`` tokens each) fill the first rows of the state.

        ``first_ids`` holds each row's first new token (from the prompt's forward pass) and ``budgets`` the most
        tokens each row may get, that one included. Returns each row's tokens before its end-of-sequence token.
        """
        from torch.profiler import record_function

        count = len(budgets)
        if count == 0:
            return []
        if count > self.state.rows or max(budgets) > self.max_new_tokens:
            raise ValueError(f"{count} rows of up to {max(budgets)} tokens do not fit this decoder")
        if prompt_length + max(budgets) > self.state.positions:
            raise ValueError(f"{prompt_length} + {max(budgets)} positions do not fit {self.state.positions}")
        rows = self._rows_for(count)
        self._start(first_ids, prompt_length, budgets, count)
        order = list(range(count))  # the batch row of each decoder row still running
        results: list[list[int] | None] = [None] * count
        steps = max(budgets) - 1
        if self.sync is not None:  # every rank runs as many steps as the longest
            steps = self.sync.most(steps)
        check_every = 1 if self.exact else CHECK_EVERY_CUDA
        for step in range(1, steps + 1):
            position = prompt_length + step - 1  # of the token fed in this step
            self._advance_shape(rows, position)
            self.stats.steps += 1
            self.stats.row_steps += rows
            if step % check_every and step != steps:
                continue
            with record_function(STEP_RANGE):  # which rows finished, and the batch shrinking, are the steps' work
                done = self.finished[: len(order)].tolist()
                all_done = all(done)
                if self.sync is not None:
                    all_done = self.sync.all(all_done)
                if all_done:
                    break
                running = [row for row, finished in enumerate(done) if not finished]
                smaller = self._rows_for(len(running))
                if len(running) < len(order) and (self.exact or smaller <= SHRINK_AT * rows):
                    self._collect(order, budgets, results, [row for row, finished in enumerate(done) if finished])
                    order = self._keep(running, order, smaller)
                    rows = smaller
        self._collect(order, budgets, results, range(len(order)))
        return [row if row is not None else [] for row in results]

    def _rows_for(self, count: int) -> int:
        """The row count a step runs for ``count`` rows: exactly that on the CPU; a power of two (or the state's
        size) in graph shapes, so that a few graphs serve every batch."""
        if self.exact:
            return count
        return min(self.state.rows, next_power_of_two(count))

    def _start(self, first_ids: torch.Tensor, prompt_length: int, budgets: Sequence[int], count: int) -> None:
        import torch

        first = first_ids.to(self.ids.device).long()
        self.ids[:count, 0] = first
        self.tokens.fill_(self.pad_id)
        self.tokens[:count, 0] = first
        self.left.zero_()
        self.left[:count] = torch.tensor(budgets, device=self.left.device) - 1
        self.finished.fill_(True)
        self.finished[:count] = self._is_eos(first) | (self.left[:count] <= 0)
        self.position.fill_(prompt_length)
        self.column.fill_(1)

    def _advance_shape(self, rows: int, position: int) -> None:
        """One step for ``rows`` rows at ``position``: with the exact span, or in the graph shape of its span (a
        state that bounds attention by the position itself has one shape per row count). The step runs inside a
        profiler range named :data:`STEP_RANGE`, so that a profile can tell the steps from the prompt pass."""
        from torch.profiler import record_function

        with record_function(STEP_RANGE):
            if self.exact:
                self._advance(rows, position + 1, True)
                return
            span = self.state.positions
            if not self.reads_lengths:
                span = min(span, -(-(position + 1) // SPAN_STEP) * SPAN_STEP)
            if self.graphs is None or not self.graphs.enabled:
                self._advance(rows, span, False)
            else:
                self.graphs.run((rows, span), lambda: self._advance(rows, span, False))

    def _advance(self, rows: int, span: int, exact: bool) -> None:
        """One greedy step for the first ``rows`` rows, every result written in place into the buffers."""
        import torch

        mask = None
        if not (exact or self.reads_lengths):
            mask = (self.arange[:span] <= self.position).view(1, 1, 1, span)
        logits = self.state.step(self.ids[:rows], self.position, span, mask)
        finished = self.finished[:rows]
        chosen = torch.where(finished, self.pad, logits.argmax(-1))
        self.tokens[:rows].index_copy_(1, self.column, chosen.unsqueeze(1))
        left = self.left[:rows]
        left.sub_(1)
        finished |= self._is_eos(chosen) | (left <= 0)
        self.ids[:rows].copy_(chosen.unsqueeze(1))
        self.position.add_(1)
        self.column.add_(1)

    def _is_eos(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids.unsqueeze(-1) == self.eos).any(-1)

    def _keep(self, running: list[int], order: list[int], rows: int) -> list[int]:
        """Move the rows still running to the front of every buffer; rows past them up to ``rows`` are finished
        fillers."""
        import torch

        keep = torch.tensor(running, device=self.ids.device)
        count = len(running)
        for buffer in (self.ids, self.tokens, self.left, self.finished):
            buffer[:count] = buffer[keep]
        self.finished[count:] = True
        self.left[count:] = 0
        self.state.move_rows(keep)
        return [order[row] for row in running]

    def _collect(self, order: list[int], budgets: Sequence[int], results: list[Any], rows: Any) -> None:
        """Copy the tokens of decoder ``rows`` into ``results`` (by batch row), cut at the end-of-sequence token."""
        rows = list(rows)
        if not rows:
            return
        eos = set(self.eos.tolist())
        tokens = self.tokens[: len(order)].tolist()
        for row in rows:
            batch_row = order[row]
            kept = tokens[row][: budgets[batch_row]]
            end = next((index for index, token in enumerate(kept) if token in eos), len(kept))
            results[batch_row] = kept[:end]
            self.stats.tokens += end

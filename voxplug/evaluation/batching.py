"""Transcribe many clips with a family's fast decoder: token budgets from each clip's length, clips of one prompt
length batched together longest first, the batch size chosen from free GPU memory.

A family describes itself through :class:`FastTranscription` (its prompts, its memory per row, its forward pass
over prompts) and :func:`transcribe_clips` does the rest with :class:`~voxplug.evaluation.decoding.GreedyDecoder`.
The encoder runs once per clip, in the prompt's forward pass. On a GPU the prompts pass through the model
:data:`PREFILL_ROWS` clips at a time while a thread prepares the next clips' prompts and features on the host (the
processor's work, which would otherwise leave the GPU waiting), and the next batch's while this one decodes. A
batch that runs out of GPU memory is retried with half the rows.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from voxplug.errors import DataError
from voxplug.evaluation.decoding import SPAN_STEP, DecodeState, DecodeStats, GreedyDecoder, RankSync

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger("voxplug.evaluation")

SAMPLING_RATE = 16000
#: A clip's token budget when none is given: this many tokens per second of audio, plus :data:`TOKEN_MARGIN`.
#: Fast speech is about 4 words a second; BPE vocabularies spend 1.3 (English) to 3 tokens a word.
TOKENS_PER_SECOND = 15
TOKEN_MARGIN = 16
#: Rows decoded together when the size is not given and cannot be read from GPU memory.
DEFAULT_ROWS = 8
#: The most rows chosen from free memory (more shortens the decoding little and the prompt passes not at all).
MAX_ROWS = 256
#: Clips whose prompts run through the model in one forward pass, on a GPU.
PREFILL_ROWS = 16
#: Share of the free GPU memory the decoder may plan for (the rest covers what the estimates miss).
MEMORY_SHARE = 0.8


class PromptBatch(Protocol):
    """Prompts of one length and the clips' features, ready for a forward pass."""

    prompt_length: int


class FastTranscription(Protocol):
    """What :func:`transcribe_clips` needs from a model family, for one model."""

    device: torch.device
    eos_ids: tuple[int, ...]
    pad_id: int
    #: The most positions (prompt and new tokens) the decoder can hold.
    max_positions: int

    def prompt_key(self, audio: np.ndarray, language: str | None) -> Hashable:
        """Clips with one key get prompts of one length (so a batch needs no padding)."""
        ...

    def prompt_length(self, key: Hashable) -> int:
        """The prompt length of clips of ``key`` (an upper bound)."""
        ...

    def row_bytes(self, positions: int) -> int:
        """Device memory the decoder state takes per row of ``positions`` positions."""
        ...

    def prefill_bytes(self, key: Hashable) -> int:
        """Device memory the forward pass over one prompt of ``key`` takes at its peak."""
        ...

    def encode(self, audios: Sequence[np.ndarray], languages: Sequence[str | None]) -> PromptBatch:
        """The prompts and audio features of clips of one prompt key (host work; may run in another thread)."""
        ...

    def new_state(self, rows: int, positions: int) -> DecodeState:
        """Key/value buffers for ``rows`` rows of ``positions`` positions, with the decoder's step."""
        ...

    def prefill(self, batch: PromptBatch, state: DecodeState, offset: int) -> torch.Tensor:
        """Run the model over ``batch``'s prompts (encoder included), put their keys and values in ``state`` from
        row ``offset``, and return the logits of each row's first new token (float32, rules applied)."""
        ...


def token_budget(seconds: float, max_new_tokens: int | None, limit: int) -> int:
    """The most new tokens for a clip of ``seconds``: ``max_new_tokens`` when given, else :data:`TOKENS_PER_SECOND`
    per second plus :data:`TOKEN_MARGIN`; never more than ``limit`` (what the model's positions allow)."""
    wanted = max_new_tokens if max_new_tokens is not None else math.ceil(seconds * TOKENS_PER_SECOND) + TOKEN_MARGIN
    return max(1, min(wanted, limit))


def plan_batches(keys: Sequence[Hashable], seconds: Sequence[float], rows: int) -> list[list[int]]:
    """Clip indices in batches of at most ``rows``: one prompt key per batch, clips of similar length together
    (the longest first, so that a batch too large for memory shows early)."""
    groups: dict[Hashable, list[int]] = {}
    for index in sorted(range(len(keys)), key=lambda i: -seconds[i]):
        groups.setdefault(keys[index], []).append(index)
    batches = [members[start : start + rows] for members in groups.values() for start in range(0, len(members), rows)]
    return sorted(batches, key=lambda batch: -seconds[batch[0]])


def rows_that_fit(row_bytes: int, fixed_bytes: int, device: torch.device, *, cap: int = MAX_ROWS) -> int:
    """How many decoder rows of ``row_bytes`` fit in :data:`MEMORY_SHARE` of the device's free memory (what the
    caching allocator holds unused included) after ``fixed_bytes``; at least 1, at most ``cap``."""
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    usable = MEMORY_SHARE * (free + unused) - fixed_bytes
    return max(1, min(cap, int(usable // max(1, row_bytes))))


def transcribe_clips(
    engine: FastTranscription,
    audios: Sequence[np.ndarray],
    languages: Sequence[str | None],
    *,
    max_new_tokens: int | None = None,
    batch_size: int | None = None,
    cuda_graphs: bool = True,
    graph_shapes: bool | None = None,
    stats: DecodeStats | None = None,
) -> list[list[int]]:
    """Greedy token ids of each clip (16 kHz mono), in order, without the end-of-sequence token.

    ``max_new_tokens`` caps every clip at that many tokens (None: from each clip's length, see
    :func:`token_budget`); ``batch_size`` is the most clips decoded together (None: from free GPU memory on CUDA,
    :data:`DEFAULT_ROWS` elsewhere). ``graph_shapes`` runs the GPU's way (prompt passes of
    :data:`PREFILL_ROWS`, audio prepared in a thread, the decoder's graph shapes) on any device; by default on CUDA.
    """
    if len(audios) != len(languages):
        raise DataError(f"got {len(audios)} audio clips but {len(languages)} languages; give one (or None) per clip")
    if not audios:
        return []
    cuda = engine.device.type == "cuda"
    like_cuda = cuda if graph_shapes is None else graph_shapes
    stats = stats or DecodeStats()
    run = _Run(
        engine, audios, languages, max_new_tokens, batch_size, stats, cuda_graphs=cuda_graphs, like_cuda=like_cuda
    )
    return run.run()


class _Run:
    """One :func:`transcribe_clips` call: its plan, its decoder, its results."""

    def __init__(
        self,
        engine: FastTranscription,
        audios: Sequence[np.ndarray],
        languages: Sequence[str | None],
        max_new_tokens: int | None,
        batch_size: int | None,
        stats: DecodeStats,
        *,
        cuda_graphs: bool,
        like_cuda: bool,
    ) -> None:
        self.engine, self.audios, self.languages, self.stats = engine, audios, languages, stats
        self.cuda = engine.device.type == "cuda"
        self.like_cuda = like_cuda
        self.cuda_graphs = cuda_graphs
        self.sync = RankSync.if_needed(engine.device)
        self.keys = [engine.prompt_key(audio, language) for audio, language in zip(audios, languages, strict=True)]
        self.seconds = [len(audio) / SAMPLING_RATE for audio in audios]
        self.budgets = [
            token_budget(seconds, max_new_tokens, engine.max_positions - engine.prompt_length(key))
            for seconds, key in zip(self.seconds, self.keys, strict=True)
        ]
        longest = max(self.budgets)
        positions = max(engine.prompt_length(key) + budget for key, budget in zip(self.keys, self.budgets, strict=True))
        if self.sync is not None:  # one shape on every rank, and room for the steps the longest rank runs
            longest = self.sync.most(longest)
            positions = self.sync.most(max(engine.prompt_length(key) for key in self.keys)) + longest
        self.longest = longest
        self.positions = -(-positions // SPAN_STEP) * SPAN_STEP
        self.rows = min(len(audios), batch_size or self._rows_from_memory())
        stats.rows, stats.positions = self.rows, self.positions
        self.results: list[list[int] | None] = [None] * len(audios)
        self.decoder: GreedyDecoder | None = None

    def _rows_from_memory(self) -> int:
        if not self.cuda or self.sync is not None:
            return DEFAULT_ROWS
        prefill = PREFILL_ROWS * max(self.engine.prefill_bytes(key) for key in set(self.keys))
        rows = rows_that_fit(self.engine.row_bytes(self.positions), prefill, self.engine.device)
        log.info("transcription: %d clips at once (from free GPU memory)", rows)
        return rows

    def run(self) -> list[list[int]]:
        import torch

        queue = plan_batches(self.keys, self.seconds, self.rows)
        if self.sync is not None:  # a rank with fewer batches repeats its last one, its results dropped
            queue += [queue[-1]] * (self.sync.most(len(queue)) - len(queue))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxplug-encode") as pool:
            upcoming = self._prefetch(pool, queue[0])
            while queue:
                batch = queue.pop(0)
                encoded, upcoming = upcoming, (self._prefetch(pool, queue[0]) if queue else [])
                try:
                    tokens = self._decode(batch, encoded)
                except torch.OutOfMemoryError:
                    if self.sync is not None or self.rows == 1:
                        raise
                    tokens = None
                if tokens is None:  # out of the handler, whose traceback held the failed batch's tensors
                    queue = self._fewer_rows([batch, *queue])
                    upcoming = self._prefetch(pool, queue[0])
                    continue
                for clip, ids in zip(batch, tokens, strict=True):
                    self.results[clip] = ids
        return [tokens if tokens is not None else [] for tokens in self.results]

    def _chunks(self, batch: list[int]) -> list[list[int]]:
        """The clips of ``batch`` whose prompts pass through the model together."""
        step = len(batch) if (not self.like_cuda or self.sync is not None) else PREFILL_ROWS
        return [batch[start : start + step] for start in range(0, len(batch), step)]

    def _prefetch(self, pool: ThreadPoolExecutor, batch: list[int]) -> list[Future[PromptBatch]]:
        """Prepare each prompt chunk of ``batch``: in ``pool`` on a GPU, at once on the CPU."""
        futures = []
        for chunk in self._chunks(batch):
            audios = [self.audios[index] for index in chunk]
            languages = [self.languages[index] for index in chunk]
            if self.like_cuda:
                futures.append(pool.submit(self.engine.encode, audios, languages))
                continue
            future: Future[PromptBatch] = Future()  # nothing to overlap with on the CPU
            try:
                future.set_result(self.engine.encode(audios, languages))
            except Exception as exc:  # raised where the result is read, as from the pool
                future.set_exception(exc)
            futures.append(future)
        return futures

    def _fewer_rows(self, queue: list[list[int]]) -> list[list[int]]:
        """After running out of memory: drop the decoder, halve the rows, split the batches left to match."""
        import torch

        self.decoder = None
        torch.cuda.empty_cache()
        self.rows = max(1, self.rows // 2)
        self.stats.rows = self.rows
        self.stats.notes.append(f"out of GPU memory: {self.rows} clips at once from then on")
        log.warning("transcription ran out of GPU memory; going on with %d clips at once", self.rows)
        return [batch[start : start + self.rows] for batch in queue for start in range(0, len(batch), self.rows)]

    def _decoder(self) -> GreedyDecoder:
        if self.decoder is None:
            self.decoder = GreedyDecoder(
                self.engine.new_state(self.rows, self.positions),
                max_new_tokens=self.longest,
                eos_ids=self.engine.eos_ids,
                pad_id=self.engine.pad_id,
                cuda_graphs=self.cuda_graphs,
                graph_shapes=self.like_cuda,
                sync=self.sync,
                stats=self.stats,
            )
        return self.decoder

    def _decode(self, batch: list[int], encoded: list[Future[PromptBatch]]) -> list[list[int]]:
        """Run the prompt chunks of ``batch`` through the model as they are ready, then decode them together."""
        import torch

        decoder = self._decoder()
        self.stats.batches += 1
        started, first, offset, prompt_length = self._clock(), [], 0, None
        for future in encoded:
            prompts = future.result()
            if prompt_length not in (None, prompts.prompt_length):
                raise ValueError(f"one batch got prompts of {prompt_length} and {prompts.prompt_length} tokens")
            prompt_length = prompts.prompt_length
            logits = self.engine.prefill(prompts, decoder.state, offset)
            first.append(logits.argmax(-1))
            offset += len(logits)
        decoding = self._clock()
        tokens = decoder.decode(torch.cat(first), int(prompt_length or 0), [self.budgets[clip] for clip in batch])
        self.stats.prefill_s += decoding - started
        self.stats.decode_s += self._clock() - decoding
        return tokens

    def _clock(self) -> float:
        """The time once the device has finished its queued work (phases are timed apart)."""
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.engine.device)
        return time.perf_counter()

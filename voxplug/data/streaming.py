"""Training rows as a stream: each rank and data-loader worker reads its own share, checks rows as they pass,
shuffles them in a buffer and batches them, and nothing lists them whole.

The order is a function of the seed, the epoch and the reader's shard alone, so a resumed run replays it exactly
(:mod:`voxplug.training.stream_dataset` skips what was trained without decoding it). Per epoch:

* **sharding**: a source that can cut its split into pieces (:meth:`~voxplug.data.interface.DataSource.stream_pieces`:
  blocks of a JSONL manifest, files of a Hub dataset) has them shuffled with the epoch's seed and dealt out, shard
  ``s`` of ``S`` taking pieces ``s, s + S, ...``; with fewer pieces than shards, or none, every shard reads the rows
  in one agreed order and keeps every ``S``-th. Either way each row goes to exactly one shard per epoch;
* **checks** (:class:`RowGate`): the transcript, the language (mapped to the model's codes), the duration (the row's,
  else the audio header's) against ``data.max_duration_s``, and the text scrubbers; a row that fails is dropped and
  recorded (:class:`DropLog`), never silently;
* **shuffle buffer** (:func:`shuffled`) of ``data.shuffle_buffer`` rows;
* **batches** of ``training.batch_size``: consecutive rows, or with ``training.group_by_length`` rows of similar
  duration (:func:`duration_batches`, the map-style sampler's grouping applied to a window of the stream).

Shard ``s`` is ``rank * readers + reader`` of ``world_size * readers`` (one reader per data-loader worker).
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.data.interface import DataSource, Example, RowProblem, StreamPieces
from voxplug.data.languages import map_example_language
from voxplug.errors import DataError

if TYPE_CHECKING:
    from voxplug.data.interface import TextScrubber
    from voxplug.data.languages import LanguageSupport
    from voxplug.data.loading import ExampleChecker

STREAM_ABOVE_BYTES = 8_000_000
"""A local manifest larger than this (about 50,000 rows) streams when ``data.streaming`` is left to choose."""
STREAM_EVAL_ROWS = 200
"""Rows held out of a stream for evaluation when neither the split config nor the source's size says how many."""
GROUP_BATCHES = 8
"""Batches' worth of rows sorted together by duration, as the map-style length-grouped sampler does."""
LENGTH_JITTER = 0.1
DROPPED_FILE_PREFIX = "dropped-"
STREAM_DIR = "streamed_rows"
"""The run folder's subfolder where stream readers record the rows they drop (one JSONL file per reader)."""

OnProblem = Callable[[RowProblem], None]


@dataclass(frozen=True)
class StreamShard:
    """Which share of the rows a reader takes: shard ``index`` of ``count``."""

    index: int
    count: int


def row_key(example: Example) -> str:
    """What identifies a row of a source across readings: where it came from (file and line), else its id."""
    return example.origin or f"id:{example.id}"


@dataclass
class RowGate:
    """Checks one streamed row as it passes, in place; what fails becomes a :class:`RowProblem` (see module doc)."""

    checker: ExampleChecker
    scrubbers: Sequence[TextScrubber] = ()
    languages: LanguageSupport | None = None

    def problem(self, example: Example) -> RowProblem | None:
        """None when ``example`` may train (its language mapped, duration known, text scrubbed); else why not."""
        from voxplug.data.scrub import scrub_text

        try:
            self.checker.check_one(example)
            if self.languages is not None:
                map_example_language(example, self.languages)
        except DataError as exc:
            return row_problem(example, exc)
        if self.scrubbers:
            example.text, _replaced = scrub_text(example.text, self.scrubbers)
        return None


def row_problem(example: Example, exc: BaseException) -> RowProblem:
    """The :class:`RowProblem` of ``example`` failing with ``exc`` (its code when it has one)."""
    where = row_key(example)
    reason = str(exc)
    for prefix in (example.origin, example.id):
        if prefix and reason.startswith(f"{prefix}: "):
            reason = reason[len(prefix) + 2 :]
    return RowProblem(where, reason, code=getattr(exc, "code", "rejected"))


@dataclass
class TrainStream:
    """Everything a reader needs to produce its share of the training rows, epoch after epoch; picklable.

    ``pieces`` are the source's (None: it is read from its start); ``held_out`` are the keys (:func:`row_key`) of
    rows set aside for evaluation, which never train.
    """

    source: DataSource
    pieces: StreamPieces | None
    gate: RowGate
    held_out: frozenset[str] = frozenset()
    seed: int = 42
    shuffle_buffer: int = 10_000

    @property
    def estimated_rows(self) -> int | None:
        """Training rows before checks, when the source knows its size (None otherwise)."""
        if self.pieces is None or self.pieces.rows is None:
            return None
        return max(0, self.pieces.rows - len(self.held_out))

    def shard_rows(self, epoch: int, shard: StreamShard, on_problem: OnProblem) -> Iterator[Example]:
        """The rows of ``shard`` in ``epoch``, before checks; the source's problems go to ``on_problem``.

        With at least as many pieces as shards, the shard reads pieces ``index, index + count, ...`` of the epoch's
        order; with fewer, piece ``index % pieces`` is shared by the shards with that remainder, each keeping every
        n-th of its rows; without pieces every shard reads the source whole and keeps every ``count``-th row.
        """
        source, count = self.source, shard.count
        if self.pieces is None:
            rows, share, sharers = self._without_held_out(source.examples("train")), shard.index, count
        else:
            pieces, order = self.pieces.pieces, self._piece_order(epoch)
            mine = order[shard.index :: count] if len(pieces) >= count else [order[shard.index % len(pieces)]]
            rows = self._without_held_out(_chain(source.piece_examples(pieces[i]) for i in mine))
            share, sharers = shard.index // len(pieces), max(1, -(-(count - shard.index % len(pieces)) // len(pieces)))
        for index, row in enumerate(rows):
            self._report_problems(on_problem)
            if index % sharers == share:
                yield row
        self._report_problems(on_problem)

    def batches(
        self, epoch: int, shard: StreamShard, *, batch_size: int, by_duration: bool, on_problem: OnProblem
    ) -> Iterator[list[Example]]:
        """``shard``'s batches of checked rows for ``epoch``, in the order every reading of it gives."""
        rng = random.Random(f"{self.seed}/{epoch}/{shard.index}/{shard.count}")
        checked = self._checked(self.shard_rows(epoch, shard, on_problem), on_problem)
        rows = shuffled(checked, self.shuffle_buffer, rng)
        return duration_batches(rows, batch_size, rng) if by_duration else plain_batches(rows, batch_size)

    def _checked(self, rows: Iterable[Example], on_problem: OnProblem) -> Iterator[Example]:
        for row in rows:
            problem = self.gate.problem(row)
            if problem is None:
                yield row
            else:
                on_problem(problem)

    def _piece_order(self, epoch: int) -> list[int]:
        order = list(range(len(self.pieces.pieces))) if self.pieces is not None else []
        random.Random(f"{self.seed}/{epoch}/pieces").shuffle(order)
        return order

    def _without_held_out(self, rows: Iterable[Example]) -> Iterator[Example]:
        if not self.held_out:
            yield from rows
            return
        for row in rows:
            if row_key(row) not in self.held_out:
                yield row

    def _report_problems(self, on_problem: OnProblem) -> None:
        if self.source.problems:
            for problem in self.source.problems:
                on_problem(problem)
            self.source.problems.clear()


def _chain(iterables: Iterable[Iterable[Example]]) -> Iterator[Example]:
    return itertools.chain.from_iterable(iterables)


def shuffled(items: Iterable[Any], size: int, rng: random.Random, *, initial: int = 1_000) -> Iterator[Any]:
    """``items`` in an order drawn by ``rng`` from a buffer of at most ``size``: memory stays at ``size`` items.

    The first item comes out once ``initial`` are in (not ``size``: a full buffer of rows checked by their audio
    headers would delay the first step by seconds); the buffer then grows by one item for each that leaves, up to
    ``size``, as WebDataset's shuffle does.
    """
    iterator = iter(items)
    buffer: list[Any] = []
    for item in iterator:
        buffer.append(item)
        if len(buffer) < size:
            buffer.extend(itertools.islice(iterator, 1))
        if len(buffer) >= min(initial, size):
            index = rng.randrange(len(buffer))
            buffer[index], buffer[-1] = buffer[-1], buffer[index]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


def plain_batches(items: Iterable[Example], batch_size: int) -> Iterator[list[Example]]:
    """Consecutive ``batch_size`` items; the last batch may be short."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, batch_size)):
        yield batch


def duration_batches(items: Iterable[Example], batch_size: int, rng: random.Random) -> Iterator[list[Example]]:
    """Batches of clips of similar duration: each window of :data:`GROUP_BATCHES` batches is sorted by a jittered
    duration, cut into batches, and those batches come out in a shuffled order (the last short one last)."""
    iterator = iter(items)
    while window := list(itertools.islice(iterator, batch_size * GROUP_BATCHES)):
        keyed = sorted(window, key=lambda e: -(e.duration_s or 0.0) * rng.uniform(1 - LENGTH_JITTER, 1 + LENGTH_JITTER))
        batches = [keyed[start : start + batch_size] for start in range(0, len(keyed), batch_size)]
        full = [batch for batch in batches if len(batch) == batch_size]
        rng.shuffle(full)
        yield from full
        yield from (batch for batch in batches if len(batch) < batch_size)


def stream_eval_rows(pieces: StreamPieces | None, split: Any) -> int:
    """How many rows to hold out of a stream for evaluation: the split config's share of a known size (capped by
    ``max_eval_rows``), else ``max_eval_rows`` or :data:`STREAM_EVAL_ROWS`."""
    from voxplug.data.split import eval_row_count

    if pieces is not None and pieces.rows is not None:
        return eval_row_count(pieces.rows, split)
    return split.max_eval_rows or STREAM_EVAL_ROWS


def first_rows(source: DataSource, pieces: StreamPieces | None, count: int) -> Iterator[Example]:
    """The first ``count`` rows of a source's training split, read the way its stream reads them."""
    if pieces is None:
        rows: Iterable[Example] = source.examples("train")
    else:
        rows = _chain(source.piece_examples(piece) for piece in pieces.pieces)
    return itertools.islice(rows, count)


class DropLog:
    """Records the rows one stream reader drops, one JSON line each, in ``folder/dropped-<reader>.jsonl``.

    Each line is flushed as it is written, so the record survives the process being killed (a torn last line is
    skipped when read back). The file opens on the first drop: a reader that drops nothing writes nothing.
    """

    def __init__(self, folder: Path | None, reader: str) -> None:
        self.path = folder / f"{DROPPED_FILE_PREFIX}{reader}.jsonl" if folder is not None else None
        self._handle: Any = None

    def record(self, problem: RowProblem, *, epoch: int) -> None:
        """Append ``problem`` (found while reading ``epoch``)."""
        if self.path is None:
            return
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        line = {"row": problem.row, "reason": problem.reason, "code": problem.code, "epoch": epoch}
        self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file (the records are on disk already)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_drops(folder: Path) -> list[RowProblem]:
    """Every row the stream readers recorded in ``folder``, each once (a resumed run reads some rows again)."""
    seen: set[str] = set()
    problems: list[RowProblem] = []
    if not folder.is_dir():
        return problems
    for path in sorted(folder.glob(f"{DROPPED_FILE_PREFIX}*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if entry.get("row") in seen:
                    continue
                seen.add(entry["row"])
                problems.append(RowProblem(entry["row"], entry["reason"], code=entry.get("code", "rejected")))
    return problems


def clear_drops(folder: Path, *, prefix: str = "") -> None:
    """Remove the drop records in ``folder`` of readers whose names start with ``prefix`` (a run that starts afresh
    records its own)."""
    if folder.is_dir():
        for path in folder.glob(f"{DROPPED_FILE_PREFIX}{prefix}*.jsonl"):
            path.unlink(missing_ok=True)


def reader_name(rank: int, reader: int) -> str:
    """``rank0-worker1``: how a reader's files are named."""
    return f"rank{rank}-worker{reader}"

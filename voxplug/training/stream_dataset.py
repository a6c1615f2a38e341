"""Streamed training data as the Trainer sees it, resumable to the batch.

* :class:`StreamingTrainDataset`: a PyTorch ``IterableDataset`` in which every data-loader worker is one *reader*
  of :mod:`voxplug.data.streaming`: it produces its shard's batches epoch after epoch, without end, decodes their
  audio (exactly as :class:`~voxplug.training.dataset.ExampleDataset` does), drops clips that fail and tags each
  batch with where it stands (:class:`StreamTag`).
* :class:`StreamEpochs`: the loader the Trainer takes, one epoch of the plan's length per ``iter()`` out of the one
  endless stream; it records the tag of every batch handed over (:class:`StreamPosition`). Each rank has as many
  batches as the Trainer asks for, so ranks never wait on one another at an epoch's end.
* :func:`write_position` / :func:`read_position`: the position goes into every checkpoint, one file per rank. A
  resumed run replays each reader's epoch up to its position without decoding anything, and starts the data
  loader's round-robin at the reader whose batch came next: the batches after ``--resume`` are the uninterrupted
  run's.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch.utils.data import IterableDataset, get_worker_info

from voxplug.data.interface import RowProblem
from voxplug.data.streaming import STREAM_DIR, DropLog, StreamShard, clear_drops, read_drops, reader_name, row_problem
from voxplug.errors import DataError, TrainingError, VoxplugError
from voxplug.training.outputs import write_json

if TYPE_CHECKING:
    from voxplug.data.interface import Example
    from voxplug.data.streaming import TrainStream

log = logging.getLogger("voxplug.training")

POSITION_FILE = "voxplug_stream_rank{rank}.json"
"""The file in a checkpoint folder that holds how far rank ``rank``'s stream got."""


@dataclass(frozen=True)
class StreamTag:
    """Where a batch comes from: ``reader``'s ``position``-th batch (counted from 1) of its ``epoch``."""

    reader: int
    epoch: int
    position: int


@dataclass
class StreamBatch:
    """Decoded rows (``ExampleDataset`` items) and their tag, as a reader yields them."""

    items: list[dict[str, Any]]
    tag: StreamTag


@dataclass
class StreamPosition:
    """How far one rank's stream got: batches handed to the Trainer in all, and per reader its epoch and the
    number of batches of that epoch handed over."""

    batches: int = 0
    readers: dict[int, tuple[int, int]] = field(default_factory=dict)

    def first_reader(self, readers: int) -> int:
        """The reader whose batch comes next: the data loader takes its workers' batches in turn."""
        return self.batches % readers

    def take(self, tag: StreamTag) -> None:
        """Note that the batch tagged ``tag`` went to the Trainer."""
        self.batches += 1
        self.readers[tag.reader] = (tag.epoch, tag.position)


class StreamingTrainDataset(IterableDataset):
    """One rank's training batches from a :class:`~voxplug.data.streaming.TrainStream` (see the module docstring).

    ``decoder`` is an ``ExampleDataset`` (without examples) configured as the map-style one would be: each batch
    is decoded through a copy of it. :meth:`place` says which rank this is, how many readers it has and where to
    start; the Trainer calls it before the data loader starts its workers.
    """

    def __init__(
        self,
        stream: TrainStream,
        decoder: Any,
        *,
        batch_size: int,
        by_duration: bool,
        batches_per_epoch: int,
        drops_dir: Path | None,
    ) -> None:
        super().__init__()
        self.stream = stream
        self.decoder = decoder
        self.batch_size = batch_size
        self.by_duration = by_duration
        self.batches_per_epoch = batches_per_epoch
        self.drops_dir = drops_dir
        self.rank, self.world_size, self.readers = 0, 1, 1
        self.start = StreamPosition()

    def place(self, *, rank: int, world_size: int, readers: int, start: StreamPosition) -> None:
        """Read as rank ``rank`` of ``world_size`` with ``readers`` readers (data-loader workers, at least one),
        from ``start``."""
        self.rank, self.world_size, self.readers, self.start = rank, world_size, max(1, readers), start

    def __iter__(self) -> Iterator[StreamBatch]:
        info = get_worker_info()
        reader = ((info.id if info is not None else 0) + self.start.first_reader(self.readers)) % self.readers
        shard = StreamShard(self.rank * self.readers + reader, self.world_size * self.readers)
        epoch, skip = self.start.readers.get(reader, (0, 0))
        drops = DropLog(self.drops_dir, reader_name(self.rank, reader))
        try:
            while True:
                yield from self._epoch(epoch, shard, skip, reader, drops)
                epoch, skip = epoch + 1, 0
        finally:
            drops.close()

    def _epoch(self, epoch: int, shard: StreamShard, skip: int, reader: int, drops: DropLog) -> Iterator[StreamBatch]:
        def record(problem: RowProblem) -> None:
            if epoch == 0:  # later epochs read the same rows and drop the same ones
                drops.record(problem, epoch=epoch)

        position = 0
        batches = self.stream.batches(
            epoch, shard, batch_size=self.batch_size, by_duration=self.by_duration, on_problem=record
        )
        for batch in batches:
            position += 1
            if position <= skip:  # trained before the run was resumed: replayed, not decoded
                continue
            items = self._decoded(batch, record)
            if items:
                yield StreamBatch(items, StreamTag(reader, epoch, position))
        if position == 0:
            raise DataError(
                f"rank {self.rank}, data-loader worker {reader}: its share of the stream has no usable row in epoch "
                f"{epoch}: the data has too few rows for {self.world_size} process(es) x {self.readers} worker(s), "
                f"or every row was dropped (each one is listed in {self.drops_dir or 'the run folder'})"
            )

    def _decoded(self, batch: list[Example], record: Any) -> list[dict[str, Any]]:
        """The batch's items, decoded as the map-style dataset decodes them; clips that fail are recorded."""
        from voxplug.data.audio import analyse_clip, check_clip

        view = copy.copy(self.decoder)
        view.examples = batch
        limit = self.stream.gate.checker.max_duration_s
        items = []
        for index, example in enumerate(batch):
            try:
                item = view[index]
            except VoxplugError as exc:
                record(row_problem(example, exc))
                continue
            issues = check_clip(analyse_clip(item["audio"]), max_duration_s=limit)
            errors = [issue for issue in issues if issue.is_error]
            if errors:
                record(RowProblem(example.origin or example.id, errors[0].message, code=errors[0].code))
                continue
            items.append(item)
        return items


class StreamCollator:
    """Collates a :class:`StreamBatch` with the run's collator and passes its tag along: ``(batch, tag)``."""

    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, batch: StreamBatch) -> tuple[Any, StreamTag]:
        return self.collator(batch.items), batch.tag


class StreamEpochs:
    """The Trainer's view of a stream's data loader: ``len()`` batches per ``iter()``, all from one running stream.

    Every batch's tag is taken into :attr:`position` as the batch goes to the Trainer. A resumed epoch asks for
    fewer batches (``get_resumed_dataloader`` returns this loader as it is: it already starts where the checkpoint
    left off). Everything else (``dataset``, ...) is the wrapped loader's.
    """

    def __init__(self, loader: Any, batches_per_epoch: int, position: StreamPosition) -> None:
        self.loader = loader
        self.batches_per_epoch = batches_per_epoch
        self.position = position
        self._stream: Iterator[Any] | None = None

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (a copy or an unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.loader, name)

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: the stream runs on from one epoch into the next."""

    def __iter__(self) -> Iterator[Any]:
        if self._stream is None:
            self._stream = iter(self.loader)
        return self._epoch(self._stream)

    def _epoch(self, stream: Iterator[Any]) -> Iterator[Any]:
        for _ in range(self.batches_per_epoch):
            batch, tag = next(stream)
            self.position.take(tag)
            yield batch


def write_position(checkpoint: Path, rank: int, world_size: int, readers: int, position: StreamPosition) -> Path:
    """Write rank ``rank``'s stream position into ``checkpoint`` (a temporary file renamed into place)."""
    data = {
        "world_size": world_size,
        "readers": readers,
        "batches": position.batches,
        "positions": {str(reader): list(at) for reader, at in sorted(position.readers.items())},
    }
    return write_json(checkpoint / POSITION_FILE.format(rank=rank), data)


def read_position(checkpoint: Path, rank: int, world_size: int, readers: int) -> StreamPosition:
    """Rank ``rank``'s stream position in ``checkpoint``; refused when the run's layout changed since."""
    path = checkpoint / POSITION_FILE.format(rank=rank)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainingError(
            f"{checkpoint} has no stream position for rank {rank} ({path.name}): it was written by a run that did "
            "not stream its data, or with fewer processes; resume with the same data settings and process count"
        ) from None
    if (data["world_size"], data["readers"]) != (world_size, readers):
        raise TrainingError(
            f"{checkpoint}: the stream was read by {data['world_size']} process(es) x {data['readers']} reader(s) "
            f"and this run has {world_size} x {readers}; the data order depends on both, so resume with the same "
            "number of processes and training.dataloader_workers"
        )
    positions = {int(reader): (int(at[0]), int(at[1])) for reader, at in data["positions"].items()}
    return StreamPosition(int(data["batches"]), positions)


def stream_folder(run_dir: Path) -> Path:
    """Where a run's stream readers record what they drop."""
    return run_dir / STREAM_DIR


def forget_drops(folder: Path, rank: int) -> None:
    """Remove rank ``rank``'s drop records in ``folder`` left by an earlier attempt (a run starting from step 0
    records its own)."""
    clear_drops(folder, prefix=f"rank{rank}-")


def streamed_summary(run_dir: Path, summary: dict[str, Any], position: StreamPosition | None) -> dict[str, Any]:
    """``summary`` (the data stage's) with the rows the stream's readers dropped added to its rejected rows.

    The readers record the rows they drop on the first pass through the data; each row counts once.
    """
    from collections import Counter

    rejected = list(summary.get("rejected") or [])
    known = {entry["row"] for entry in rejected}  # rows before the evaluation set's end are read twice
    dropped = [problem for problem in read_drops(stream_folder(run_dir)) if problem.row not in known]
    rejected += [{"row": problem.row, "reason": problem.reason, "code": problem.code} for problem in dropped]
    counts = Counter(summary.get("rejected_counts") or {})
    counts.update(problem.code for problem in dropped)
    updated = {**summary, "rejected": rejected, "rejected_counts": dict(sorted(counts.items()))}
    updated["stream_dropped_rows"] = len(dropped)
    if position is not None:
        updated["stream_batches_per_rank"] = position.batches
        updated["stream_epochs_begun"] = 1 + max((epoch for epoch, _ in position.readers.values()), default=0)
    return updated


def stream_loader(
    dataset: StreamingTrainDataset, args: Any, collate: Any, resume_checkpoint: str | None
) -> StreamEpochs:
    """The loader of streamed training data: each worker reads its own shard, each batch comes whole from one worker,
    and a resumed run starts where its checkpoint's stream stood (``args`` are the Trainer's arguments).

    The loader is not handed to accelerate, which would split an iterable dataset across the ranks again.
    """
    from torch.utils.data import DataLoader

    readers = max(1, args.dataloader_num_workers)
    if resume_checkpoint is not None:
        start = read_position(Path(resume_checkpoint), args.process_index, args.world_size, readers)
    else:
        start = StreamPosition()
        if dataset.drops_dir is not None:
            forget_drops(dataset.drops_dir, args.process_index)
    dataset.place(rank=args.process_index, world_size=args.world_size, readers=readers, start=start)
    workers = args.dataloader_num_workers
    loader = DataLoader(
        dataset,
        batch_size=None,
        collate_fn=StreamCollator(collate),
        num_workers=workers,
        pin_memory=args.dataloader_pin_memory,
        persistent_workers=workers > 0 and args.dataloader_persistent_workers,
        multiprocessing_context=args.dataloader_multiprocessing_context if workers > 0 else None,
        prefetch_factor=args.dataloader_prefetch_factor if workers > 0 else None,
        in_order=True,  # batch k comes from worker k mod workers: what a resumed run's order relies on
    )
    return StreamEpochs(loader, dataset.batches_per_epoch, start)

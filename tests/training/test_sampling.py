"""Training order: length-grouped batches from clip durations (every clip once per epoch, similar lengths together,
reshuffled), and the data loader whose batches run on from one epoch into the next (the Trainer's, with workers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voxplug.training.sampling import LengthGroupedShuffleSampler

LENGTHS = [1.0 + (i * 7 % 23) for i in range(50)]


def test_each_epoch_is_a_permutation_that_changes_between_epochs() -> None:
    sampler = LengthGroupedShuffleSampler(LENGTHS, batch_size=4, seed=3)
    first, second = sampler.epoch_order(0), sampler.epoch_order(1)
    assert sorted(first) == sorted(second) == list(range(len(LENGTHS)))
    assert first != second
    sampler.set_epoch(1)
    assert list(sampler) == second == LengthGroupedShuffleSampler(LENGTHS, batch_size=4, seed=3).epoch_order(1)


def test_batches_hold_similar_lengths() -> None:
    order = LengthGroupedShuffleSampler(LENGTHS, batch_size=4, seed=0).epoch_order(0)
    batches = [order[i : i + 4] for i in range(0, 48, 4)]
    spread_grouped = sum(max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in batches)
    shuffled = list(range(48))
    spread_random = sum(
        max(LENGTHS[i] for i in shuffled[j : j + 4]) - min(LENGTHS[i] for i in shuffled[j : j + 4])
        for j in range(0, 48, 4)
    )
    assert spread_grouped < spread_random / 2


def test_a_short_final_batch_stays_last() -> None:
    # Lengths far apart (jitter cannot reorder them): the two shortest clips form the short batch, which stays last
    # so that the full batches before it stay aligned with the data loader's batches.
    lengths = [2.0**i for i in range(10)]
    for epoch in range(5):
        order = LengthGroupedShuffleSampler(lengths, batch_size=4, seed=0).epoch_order(epoch)
        assert sorted(order[-2:]) == [0, 1]
        assert sorted(order[:4]) in ([2, 3, 4, 5], [6, 7, 8, 9])


class CountingRows:
    """``{"id": index}`` rows; every read, in any worker process, counts in a shared counter, and ``read_ahead`` is
    set once more rows were read than one epoch holds."""

    def __init__(self, size: int) -> None:
        import multiprocessing

        self.size = size
        self.reads = multiprocessing.Value("i", 0)
        self.read_ahead = multiprocessing.Event()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, int]:
        with self.reads.get_lock():
            self.reads.value += 1
            if self.reads.value > self.size:
                self.read_ahead.set()
        return {"id": index}


def ids(rows: list[dict[str, int]]) -> list[int]:
    return [row["id"] for row in rows]


def epochs_read(loader: Any, rows: CountingRows, epochs: int, *, expect_read_ahead: bool) -> list[list[list[int]]]:
    """Each epoch's batches as the Trainer reads them (``set_epoch``, then ``iter``). Between the first epoch's last
    batch and the second epoch's start, the workers have read into the second epoch (waited for, up to a minute) or
    have read exactly one epoch's rows."""
    got = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        batches = iter(loader)
        got.append([next(batches) for _ in range(len(loader))])  # never asks past the epoch's last batch
        if epoch == 0 and expect_read_ahead:
            assert rows.read_ahead.wait(timeout=60), "the workers never read past the first epoch"
        elif epoch == 0:
            assert rows.reads.value == rows.size and not rows.read_ahead.is_set()
    return got


def test_with_workers_the_next_epoch_loads_while_this_one_ends_in_the_same_order(
    tmp_path: Path, tiny_model: Path
) -> None:
    from transformers import TrainingArguments
    from voxplug_voxtral.loading import load_voxtral

    from voxplug.training.sampling import ShuffleSampler
    from voxplug.training.speed.epoch_stream import EpochSlices
    from voxplug.training.transcription_trainer import TranscriptionTrainer

    model, _ = load_voxtral(tiny_model, dtype="fp32", device="cpu")
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=3,
        dataloader_num_workers=2,
        dataloader_persistent_workers=True,
        remove_unused_columns=False,
        seed=5,
        report_to="none",
        use_cpu=True,
    )
    rows = CountingRows(10)
    trainer = TranscriptionTrainer(
        model=model, args=args, train_dataset=rows, data_collator=ids, label_logits_only=False
    )
    orders = [ShuffleSampler(10, seed=5).epoch_order(epoch) for epoch in range(3)]
    expected = [[order[start : start + 3] for start in range(0, 10, 3)] for order in orders]

    stream = trainer.get_train_dataloader()
    assert isinstance(stream, EpochSlices) and len(stream) == 4
    started = []
    stream.loader = Recorded(stream.loader, started)
    # the workers read the second epoch's rows before it began
    assert epochs_read(stream, rows, 3, expect_read_ahead=True) == expected
    assert started == [0]  # one stream for all three epochs

    # the Trainer's own loader (a resumed run takes it): the same order, nothing read ahead of an epoch
    trainer.epochs_in_one_stream = False
    trainer.train_dataset = rows = CountingRows(10)  # the stream's workers still read ahead into epoch 3
    plain = trainer.get_train_dataloader()
    assert not isinstance(plain, EpochSlices)
    assert epochs_read(plain, rows, 3, expect_read_ahead=False) == expected


def test_the_stream_restarts_where_the_trainer_asks() -> None:
    from voxplug.training.sampling import ShuffleSampler
    from voxplug.training.speed.epoch_stream import EpochBatches, EpochSlices

    sampler = ShuffleSampler(7, seed=1)
    batches = EpochBatches(sampler, 2, drop_last=True)
    assert len(batches) == 3
    loader = _Loader(batches)
    stream = EpochSlices(loader, batches)
    first = list(stream)
    assert first == [sampler.epoch_order(0)[i : i + 2] for i in (0, 2, 4)]
    partial = iter(stream)  # epoch 1, abandoned after one batch (a run stopped by max_steps)
    assert next(partial) == sampler.epoch_order(1)[:2]
    stream.set_epoch(1)  # asked again for epoch 1: it starts over, from its first batch
    assert list(stream) == [sampler.epoch_order(1)[i : i + 2] for i in (0, 2, 4)]
    assert list(stream) == [sampler.epoch_order(2)[i : i + 2] for i in (0, 2, 4)]
    assert loader.started == [0, 1]  # one stream from epoch 0 on, a new one for the repeated epoch 1


class Recorded:
    """A loader whose iterations are noted (the epoch each starts at) in ``started``."""

    def __init__(self, loader: Any, started: list[int]) -> None:
        self.loader = loader
        self.started = started

    def __iter__(self) -> Any:
        self.started.append(self.loader.batch_sampler.start_epoch)
        return iter(self.loader)


class _Loader:
    """A loader over a batch sampler that records where each of its iterations started."""

    def __init__(self, batches: Any) -> None:
        self.batches = batches
        self.started: list[int] = []

    def __iter__(self) -> Any:
        self.started.append(self.batches.start_epoch)
        return iter(self.batches)

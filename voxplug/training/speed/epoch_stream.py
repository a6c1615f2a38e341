"""One batch stream across epochs: :class:`EpochBatches` and :class:`EpochSlices`.

A data loader whose batches run on from one epoch into the next, cut back into epochs for the Trainer. A loader that
starts each epoch afresh leaves the GPU waiting at every epoch start while one worker decodes and extracts features
for the epoch's first batch, which can take longer than a LoRA step; a personal dataset of a hundred clips meets an
epoch start every dozen steps. One stream lets the workers prepare the next epoch's first batches while the current
epoch's last ones train. The order of each epoch is the sampler's (:mod:`voxplug.training.sampling`), so the
batches are the ones the Trainer's own loader would give.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxplug.training.sampling import EpochSampler


class EpochBatches:
    """A batch sampler that never ends: the batches of epoch ``start_epoch``, then of the next, and so on.

    Each epoch's order is ``sampler.epoch_order(epoch)``, cut into batches of ``batch_size``, the last one short
    unless ``drop_last``. ``len()`` is the batches of one epoch.
    """

    def __init__(self, sampler: EpochSampler, batch_size: int, *, drop_last: bool) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.start_epoch = 0

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.start_epoch
        while True:
            order = self.sampler.epoch_order(epoch)
            for start in range(0, len(self) * self.batch_size, self.batch_size):
                yield order[start : start + self.batch_size]
            epoch += 1


class EpochSlices:
    """A data loader over :class:`EpochBatches`, seen as one epoch per ``iter()``: each iteration yields the next
    ``len(batches)`` batches of one running stream, so the loader's workers go on into the next epoch meanwhile.

    ``set_epoch(epoch)`` (the Trainer calls it before each epoch) names the epoch the next ``iter()`` yields; the
    stream restarts there unless it stands at that epoch's start. Everything else (``dataset``,
    ``batch_sampler``...) is the wrapped loader's.
    """

    def __init__(self, loader: Any, batches: EpochBatches) -> None:
        self.loader = loader
        self.batches = batches
        self._stream: Iterator[Any] | None = None
        self._at: int | None = None  # the epoch whose first batch the stream yields next (None: mid-epoch)
        self._next = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (a copy or an unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.loader, name)

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter()`` yield ``epoch``'s batches."""
        self._next = epoch

    def __iter__(self) -> Iterator[Any]:
        epoch, self._next = self._next, self._next + 1
        return self._epoch(epoch)

    def _epoch(self, epoch: int) -> Iterator[Any]:
        if self._stream is None or self._at != epoch:
            self.batches.start_epoch = epoch
            self._stream = iter(self.loader)
        self._at = None
        last = len(self.batches) - 1
        for index in range(last + 1):
            batch = next(self._stream)
            if index == last:  # the Trainer takes exactly an epoch's batches: nothing runs after the last yield
                self._at = epoch + 1
            yield batch

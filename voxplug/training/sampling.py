"""The order of training rows, epoch by epoch.

* :class:`EpochSampler`: an order that is a function of the seed and the epoch alone, so that every rank, a
  resumed run and the batch stream across epochs (:mod:`voxplug.training.speed.epoch_stream`) draw the same one.
  :class:`ShuffleSampler` is a fresh permutation each epoch.
* :class:`LengthGroupedShuffleSampler`: length-grouped batching that still shuffles, even for a few dozen clips.
  transformers' ``LengthGroupedSampler`` sorts "megabatches" of 50 batches; a personal dataset smaller than one
  megabatch then comes out in the same sorted order every epoch. This one shuffles, groups a few batches' worth of
  rows, sorts each group by a jittered length and shuffles the batch order, with a seed per epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


class EpochSampler:
    """A sampler over ``range(size)`` whose order is a function of its seed and the epoch (:meth:`epoch_order`)."""

    def __init__(self, size: int, *, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Pick the order of ``epoch`` (accelerate calls this at the start of every epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order(self.epoch))

    def epoch_order(self, epoch: int) -> list[int]:
        """The full index order of one epoch."""
        raise NotImplementedError


class ShuffleSampler(EpochSampler):
    """A permutation of ``range(size)`` drawn from the seed and the epoch."""

    def epoch_order(self, epoch: int) -> list[int]:
        import numpy as np

        return [int(i) for i in np.random.default_rng([self.seed, epoch]).permutation(self.size)]


GROUP_BATCHES = 8
LENGTH_JITTER = 0.1


class LengthGroupedShuffleSampler(EpochSampler):
    """Yield dataset indices so that each run of ``batch_size`` indices holds clips of similar length."""

    def __init__(self, lengths: Sequence[float], batch_size: int, *, seed: int) -> None:
        super().__init__(len(lengths), seed=seed)
        self.lengths = list(lengths)
        self.batch_size = batch_size

    def epoch_order(self, epoch: int) -> list[int]:
        """The full index order of one epoch."""
        import numpy as np

        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        group_size = self.batch_size * GROUP_BATCHES
        indices: list[int] = []
        for start in range(0, len(order), group_size):
            group = order[start : start + group_size]
            jittered = np.asarray([self.lengths[i] for i in group]) * rng.uniform(
                1 - LENGTH_JITTER, 1 + LENGTH_JITTER, len(group)
            )
            group = group[np.argsort(-jittered, kind="stable")]
            batches = [group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)]
            # Only the last group can end in a short batch; it stays last so later batches stay aligned.
            full = len(group) // self.batch_size
            for batch_index in [*rng.permutation(full), *range(full, len(batches))]:
                indices.extend(int(i) for i in batches[batch_index])
        return indices

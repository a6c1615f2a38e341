"""Length-grouped batching that still shuffles, even for a few dozen clips.

transformers' ``LengthGroupedSampler`` sorts "megabatches" of 50 batches; a personal dataset smaller than one
megabatch then comes out in the same sorted order every epoch. This sampler shuffles, groups a few batches'
worth of rows, sorts each group by a jittered length and shuffles the batch order, with a seed per epoch so
that every rank (and a resumed run) draws the same order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

GROUP_BATCHES = 8
LENGTH_JITTER = 0.1


class LengthGroupedShuffleSampler:
    """Yield dataset indices so that each run of ``batch_size`` indices holds clips of similar length."""

    def __init__(self, lengths: Sequence[float], batch_size: int, *, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Pick the order of ``epoch`` (accelerate calls this at the start of every epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_order(self.epoch))

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

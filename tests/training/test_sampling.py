"""Length-grouped batches from clip durations: every clip once per epoch, similar lengths together, reshuffled."""

from __future__ import annotations

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

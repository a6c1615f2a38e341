"""Choose evaluation rows from the training data: seeded, shuffled, in proportion to each language.

Built for tiny personal datasets as much as for corpora: from five rows up at least ``min_eval_rows`` (default one)
are held out, never so many that no training row is left, and at most ``max_eval_rows``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import TypeVar

from voxplug.config import SplitConfig
from voxplug.data.interface import Example

MIN_ROWS_FOR_EVAL = 5
"""Below this many rows nothing is held out: every clip is needed for training."""

E = TypeVar("E", bound=Example)


def eval_row_count(rows: int, config: SplitConfig) -> int:
    """How many of ``rows`` rows to hold out under ``config`` (0 below :data:`MIN_ROWS_FOR_EVAL` rows)."""
    if rows < MIN_ROWS_FOR_EVAL:
        return 0
    wanted = max(round(rows * config.eval_fraction), config.min_eval_rows)
    if config.max_eval_rows is not None:
        wanted = min(wanted, config.max_eval_rows)
    return max(0, min(wanted, rows - 1))


def split_examples(examples: Sequence[E], config: SplitConfig) -> tuple[list[E], list[E]]:
    """Split ``examples`` into ``(train, eval)``; the same input and ``config.seed`` always give the same split.

    With ``config.by_language``, every language with two rows or more gets at least one eval row while the eval
    budget allows, and the rest of the budget is shared in proportion to each language's rows. Both lists keep
    the input order.
    """
    budget = eval_row_count(len(examples), config)
    if budget == 0:
        return list(examples), []
    groups = _group_indices(examples, config.by_language)
    rng = random.Random(config.seed)
    for key in sorted(groups):
        rng.shuffle(groups[key])
    quotas = _language_quotas({key: len(indices) for key, indices in groups.items()}, budget)
    held_out = {index for key, indices in groups.items() for index in indices[: quotas[key]]}
    train = [example for index, example in enumerate(examples) if index not in held_out]
    evaluation = [example for index, example in enumerate(examples) if index in held_out]
    return train, evaluation


def _group_indices(examples: Sequence[Example], by_language: bool) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(examples):
        groups[(example.language or "") if by_language else ""].append(index)
    return dict(groups)


def _language_quotas(sizes: dict[str, int], budget: int) -> dict[str, int]:
    """Share ``budget`` eval rows between groups: one each first (largest groups first), then by size.

    No group gives up its last row while another group can still give one.
    """
    quotas = dict.fromkeys(sizes, 0)
    spare = {key: size - 1 for key, size in sizes.items()}  # rows a group can give while keeping one
    by_size = sorted(sizes, key=lambda key: (-sizes[key], key))
    for key in by_size:
        if budget and spare[key] > 0:
            quotas[key] += 1
            spare[key] -= 1
            budget -= 1
    budget = _share_in_proportion(quotas, spare, budget, by_size)
    for key in by_size:  # only when every group is down to one row: take those last rows too
        if budget and quotas[key] < sizes[key]:
            quotas[key] += 1
            budget -= 1
    return quotas


def _share_in_proportion(quotas: dict[str, int], spare: dict[str, int], budget: int, order: list[str]) -> int:
    """Give ``budget`` rows out in proportion to ``spare`` (largest remainders first); return what is left."""
    total_spare = sum(spare.values())
    if budget == 0 or total_spare == 0:
        return budget
    share = min(budget, total_spare)
    exact = {key: share * spare[key] / total_spare for key in order}
    given = {key: min(spare[key], math.floor(exact[key])) for key in order}
    leftover = share - sum(given.values())
    for key in sorted(order, key=lambda key: (given[key] - exact[key], order.index(key))):
        if leftover and given[key] < spare[key]:
            given[key] += 1
            leftover -= 1
    for key in order:
        quotas[key] += given[key]
    return budget - share + leftover

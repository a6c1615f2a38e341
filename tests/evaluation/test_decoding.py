"""The shared greedy loop: budgets, end-of-sequence, rows leaving the batch, graph shapes, batch planning.

A small arithmetic "model" stands in for a family's decoder step here (the families' steps are tested against
transformers' ``generate`` in test_equivalence.py): each row's next token depends on its last token, the position
and a per-row seed held in a buffer, so a row moved to the wrong place, or a step fed the wrong position, changes
the tokens.
"""

from __future__ import annotations

import pytest
import torch

from voxplug.evaluation.batching import TOKEN_MARGIN, TOKENS_PER_SECOND, plan_batches, token_budget
from voxplug.evaluation.decoding import SPAN_STEP, DecodeStats, GreedyDecoder, next_power_of_two

VOCAB = 50
EOS = 0
PAD = 1


def next_token(last: int, position: int, seed: int) -> int:
    """The toy model's greedy choice."""
    return (last * 7 + position * 3 + seed) % VOCAB


class ToyState:
    """Rows of per-row seeds and a record of every position written, with the toy step."""

    def __init__(self, rows: int, positions: int, reads_lengths: bool = False) -> None:
        self.rows, self.positions, self.device = rows, positions, torch.device("cpu")
        self.reads_lengths = reads_lengths
        self.seeds = torch.zeros(rows, dtype=torch.long)
        self.written = torch.zeros(rows, positions, dtype=torch.bool)
        self.spans: list[tuple[int, bool]] = []

    def step(self, ids: torch.Tensor, position: torch.Tensor, span: int, mask: torch.Tensor | None) -> torch.Tensor:
        rows = ids.shape[0]
        assert int(position) < span <= self.positions
        if self.reads_lengths and span != int(position) + 1:  # graph shapes: the whole cache, no mask
            assert span == self.positions and mask is None
        elif mask is None:
            assert span == int(position) + 1
        else:
            assert mask.shape == (1, 1, 1, span) and mask[0, 0, 0].tolist() == [p <= int(position) for p in range(span)]
        self.spans.append((span, mask is None))
        self.written[:rows, int(position)] = True
        chosen = (ids[:, 0] * 7 + position * 3 + self.seeds[:rows]) % VOCAB
        return torch.nn.functional.one_hot(chosen, VOCAB).float()

    def move_rows(self, keep: torch.Tensor) -> None:
        for buffer in (self.seeds, self.written):
            buffer[: len(keep)] = buffer[keep]


def expected_tokens(first: int, prompt_length: int, seed: int, budget: int) -> list[int]:
    tokens, last = [first], first
    while len(tokens) < budget and last != EOS:
        last = next_token(last, prompt_length + len(tokens) - 1, seed)
        tokens.append(last)
    return tokens[: tokens.index(EOS)] if EOS in tokens else tokens


def run(
    seeds: list[int],
    firsts: list[int],
    budgets: list[int],
    *,
    graph_shapes: bool,
    prompt: int = 5,
    reads_lengths: bool = False,
) -> tuple:
    rows = max(8, len(seeds))
    state = ToyState(rows, prompt + max(budgets) + SPAN_STEP, reads_lengths)
    state.seeds[: len(seeds)] = torch.tensor(seeds)
    stats = DecodeStats()
    decoder = GreedyDecoder(
        state, max_new_tokens=max(budgets), eos_ids=[EOS], pad_id=PAD, graph_shapes=graph_shapes, stats=stats
    )
    return decoder.decode(torch.tensor(firsts), prompt, budgets), state, stats


@pytest.mark.parametrize("graph_shapes", [False, True])
def test_rows_stop_at_eos_or_budget_and_keep_their_order(graph_shapes: bool) -> None:
    seeds = [3, 11, 4, 9, 20, 13, 6]
    firsts = [5, 17, 2, EOS, 8, 30, 41]
    budgets = [40, 3, 25, 10, 1, 40, 17]
    tokens, _, stats = run(seeds, firsts, budgets, graph_shapes=graph_shapes)
    expected = [expected_tokens(f, 5, s, b) for s, f, b in zip(seeds, firsts, budgets, strict=True)]
    assert tokens == expected
    stopped_early = [len(row) < budget - 1 for row, budget, first in zip(expected, budgets, firsts, strict=True)]
    assert any(stopped_early[i] and firsts[i] != EOS for i in range(len(seeds)))  # a row emits EOS mid-way
    assert stats.tokens == sum(len(row) for row in expected)


def test_finished_rows_leave_the_batch_on_the_cpu_at_once() -> None:
    budgets = [2, 30, 4, 30]
    tokens, state, stats = run([1, 2, 3, 4], [9, 9, 9, 9], budgets, graph_shapes=False)
    assert tokens == [expected_tokens(9, 5, s, b) for s, b in zip([1, 2, 3, 4], budgets, strict=True)]
    # two rows ran 1 and 3 steps, the two others every step: far fewer row-steps than 4 rows x 29 steps
    assert stats.row_steps < 4 * (max(budgets) - 1) * 0.6
    assert all(exact for _, exact in state.spans)


def test_graph_shapes_use_powers_of_two_rows_and_span_buckets() -> None:
    budgets = [3] * 6 + [90, 90]  # six rows stop early: the batch shrinks from 8 rows to 2
    seeds, firsts = [10, 11, 12, 13, 14, 15, 0, 8], [7] * 6 + [48, 39]  # the last two never emit EOS
    tokens, state, stats = run(seeds, firsts, budgets, graph_shapes=True)
    assert tokens == [expected_tokens(f, 5, s, b) for s, f, b in zip(seeds, firsts, budgets, strict=True)]
    assert [len(row) for row in tokens[6:]] == [90, 90]
    spans = {span for span, _ in state.spans}
    assert all(span % SPAN_STEP == 0 for span in spans) and len(spans) == 2  # positions 5..93: spans 64 and 128
    assert not any(exact for _, exact in state.spans)
    assert stats.row_steps < 8 * 89 * 0.5  # the last steps ran 2 rows, not 8


def test_a_state_that_reads_lengths_has_one_graph_shape_per_row_count() -> None:
    """Its step bounds attention by the position itself: the decoder hands it the whole cache and no mask."""
    budgets = [3] * 6 + [90, 90]
    seeds, firsts = [10, 11, 12, 13, 14, 15, 0, 8], [7] * 6 + [48, 39]
    tokens, state, _ = run(seeds, firsts, budgets, graph_shapes=True, reads_lengths=True)
    assert tokens == [expected_tokens(f, 5, s, b) for s, f, b in zip(seeds, firsts, budgets, strict=True)]
    assert {span for span, _ in state.spans} == {state.positions} and all(no_mask for _, no_mask in state.spans)


def test_every_position_is_written_once_in_order() -> None:
    _, state, _ = run([5], [3], [12], graph_shapes=False, prompt=4)
    assert state.written[0, 4:15].all() and not state.written[0, 15:].any()


def test_a_batch_larger_than_the_decoder_is_refused() -> None:
    state = ToyState(2, 64)
    decoder = GreedyDecoder(state, max_new_tokens=4, eos_ids=[EOS], pad_id=PAD)
    with pytest.raises(ValueError, match="3 rows of up to 4 tokens do not fit"):
        decoder.decode(torch.tensor([2, 3, 4]), 5, [4, 4, 4])


def test_token_budgets_follow_clip_length() -> None:
    assert token_budget(10.0, None, 10**6) == 10 * TOKENS_PER_SECOND + TOKEN_MARGIN
    assert token_budget(0.5, None, 10**6) == 8 + TOKEN_MARGIN
    assert token_budget(10.0, 7, 10**6) == 7  # a given cap is every clip's budget
    assert token_budget(60.0, None, 300) == 300  # never past the model's positions
    assert token_budget(0.0, 0, 300) == 1


def test_batches_hold_one_prompt_key_longest_first() -> None:
    keys = ["a", "b", "a", "a", "b", "a", "a"]
    seconds = [1.0, 9.0, 3.0, 8.0, 2.0, 5.0, 4.0]
    batches = plan_batches(keys, seconds, 3)
    assert sorted(index for batch in batches for index in batch) == list(range(7))
    assert all(len({keys[i] for i in batch}) == 1 and len(batch) <= 3 for batch in batches)
    assert all(seconds[batch[0]] >= seconds[batch[-1]] for batch in batches)
    assert batches == [[1, 4], [3, 5, 6], [2, 0]]  # longest first, within each key and across batches


def test_next_power_of_two() -> None:
    assert [next_power_of_two(n) for n in (0, 1, 2, 3, 5, 8, 9, 200)] == [1, 1, 2, 4, 8, 8, 16, 256]

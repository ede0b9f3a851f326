"""rag.embed.batching: which texts share a model pass."""

from __future__ import annotations

import random

import pytest

from rag.embed.batching import SHORTEST_SHARE, padding, plan_batches, workers_for


def lengths_of(lengths, batches):
    return [[lengths[i] for i in rows] for rows in batches]


@pytest.mark.parametrize(
    "lengths, size, expected",
    [
        ([], 4, []),
        ([7], 4, [[7]]),
        ([5, 5, 5, 5], 4, [[5, 5, 5, 5]]),  # one length: one batch, no padding
        ([5, 5, 5, 5, 5], 4, [[5, 5, 5], [5, 5]]),  # cut evenly, not 4 + 1
        ([9, 5, 5, 5, 5], 8, [[5, 5, 5, 5], [9]]),  # a rare length rides alone, costliest first
        ([30, 36, 40, 33], 2, [[40, 36], [33, 30]]),  # all lengths rare: length order, padded
        ([40, 20, 39, 19, 38], 8, [[40, 39, 38], [20, 19]]),  # a much shorter text starts a batch of its own
        ([5] * 4 + [8] * 4, 8, [[8] * 4, [5] * 4]),  # two lengths never share a batch
    ],
)
def test_batches_keep_one_length_together(lengths, size, expected):
    assert lengths_of(lengths, plan_batches(lengths, size)) == expected


def test_every_text_is_in_exactly_one_batch_of_at_most_the_size():
    rng = random.Random(3)
    lengths = [rng.choice([rng.randint(2, 256), 254]) for _ in range(997)]
    batches = plan_batches(lengths, 32)
    assert sorted(i for rows in batches for i in rows) == list(range(997))
    assert max(len(rows) for rows in batches) <= 32
    costs = [len(rows) * max(lengths[i] for i in rows) for rows in batches]
    assert costs == sorted(costs, reverse=True)  # the longest work is handed out first


def test_padded_batches_hold_no_text_much_shorter_than_their_longest():
    rng = random.Random(4)
    lengths = [rng.randint(5, 256) for _ in range(300)]
    for rows in plan_batches(lengths, 64):
        assert min(lengths[i] for i in rows) >= SHORTEST_SHARE * max(lengths[i] for i in rows)
    assert padding(lengths, plan_batches(lengths, 64)) < 1 / SHORTEST_SHARE


def test_lengths_with_enough_texts_are_never_padded():
    lengths = [10] * 4 + [11] * 3 + [12] * 40
    for rows in plan_batches(lengths, 32):
        if any(lengths[i] != 11 for i in rows):
            assert len({lengths[i] for i in rows}) == 1


def test_padding_counts_the_tokens_fed_over_the_real_ones():
    assert padding([4, 2], [[0, 1]]) == pytest.approx(8 / 6)
    assert padding([4, 2], [[0], [1]]) == 1.0
    rng = random.Random(5)
    lengths = [rng.randint(20, 254) for _ in range(2000)]
    by_characters_like = [list(range(start, min(start + 32, 2000))) for start in range(0, 2000, 32)]  # unsorted
    assert padding(lengths, plan_batches(lengths, 32)) < 1.02 < padding(lengths, by_characters_like)


def test_a_batch_size_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        plan_batches([3], 0)


@pytest.mark.parametrize(
    "lengths, batches, threads, expected",
    [
        ([10] * 8, [[0, 1], [2, 3], [4, 5], [6, 7]], 2, 2),  # even work: one worker per thread
        ([10] * 8, [[0, 1], [2, 3], [4, 5], [6, 7]], 8, 4),  # never more workers than batches
        ([100, 10, 10], [[0], [1], [2]], 2, 1),  # the largest batch outweighs the rest: all threads on each
        ([50, 25, 25], [[0], [1], [2]], 2, 2),  # exactly its share: shared
        ([50, 25, 25], [[0], [1], [2]], 1, 1),
    ],
)
def test_workers_share_batches_only_when_no_batch_outweighs_its_share(lengths, batches, threads, expected):
    assert workers_for(lengths, batches, threads) == expected

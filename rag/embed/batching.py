"""Which texts go through the model together: batches of one length where possible. Pure functions, no model."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

LEAST_GROUP = 4
"""Fewest texts of one length given batches of their own; rarer lengths share padded batches."""
SHORTEST_SHARE = 0.8
"""A padded batch takes texts down to this share of its longest text's length, so that padding stays under
1.25x the real tokens (docs/decisions.md, "Batches of one token length")."""


def plan_batches(lengths: Sequence[int], size: int, least: int = LEAST_GROUP) -> list[list[int]]:
    """Text indices in batches of at most `size`, costliest first, from each text's length in model tokens.

    Texts of one length are batched together, so such a batch has no padding and needs no attention mask
    (the model then takes SDPA's unmasked kernel). Lengths shared by fewer than `least` texts are batched
    in length order, padded to their longest, none shorter than `SHORTEST_SHARE` of it (sentence-transformers
    sorts by characters instead, which pads more: docs/decisions.md)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, length in enumerate(lengths):
        by_length[length].append(index)
    batches: list[list[int]] = []
    rest: list[int] = []  # longest first, as the lengths are visited
    for length in sorted(by_length, reverse=True):
        group = by_length[length]
        if len(group) >= least:
            batches += _even_split(group, size)
        else:
            rest += group
    batches += _padded_runs(rest, lengths, size)
    return sorted(batches, key=lambda rows: -fed(lengths, rows))


def _padded_runs(rest: list[int], lengths: Sequence[int], size: int) -> list[list[int]]:
    """`rest` (longest first) in runs of at most `size` whose texts are at least `SHORTEST_SHARE` of the run's first."""
    runs: list[list[int]] = []
    for index in rest:
        if runs and len(runs[-1]) < size and lengths[index] >= SHORTEST_SHARE * lengths[runs[-1][0]]:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def _even_split(group: list[int], size: int) -> list[list[int]]:
    """`group` cut into the fewest batches of at most `size`, their sizes differing by one at most."""
    count = -(-len(group) // size)
    step, extra = divmod(len(group), count)
    cuts = [n * step + min(n, extra) for n in range(count + 1)]
    return [group[a:b] for a, b in zip(cuts, cuts[1:])]


def workers_for(lengths: Sequence[int], batches: list[list[int]], threads: int) -> int:
    """How many one-thread workers should share `batches`: one per thread, but one alone (running each batch on
    every thread) when the largest batch costs more than its share, as the others would wait for it."""
    costs = [fed(lengths, rows) for rows in batches]
    workers = max(1, min(threads, len(batches)))
    return 1 if max(costs, default=0) * workers > sum(costs) else workers


def padding(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Tokens fed to the model over real tokens, when each batch is padded to its longest text."""
    return sum(fed(lengths, rows) for rows in batches) / max(1, sum(lengths))


def fed(lengths: Sequence[int], rows: Sequence[int]) -> int:
    """Tokens one batch feeds the model, padded to its longest text: what it costs."""
    return len(rows) * max(lengths[i] for i in rows)

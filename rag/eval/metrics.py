"""Evaluation metrics as pure functions: ranked ids and judgements in, numbers out. No model, no files."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

Qrels = Mapping[str, float]
"""Judged documents of one query: document id → graded relevance (0 or less means not relevant)."""


def distinct(ranked: Iterable[str]) -> list[str]:
    """Ids in order of first appearance: a document ranks where its best passage ranks."""
    seen: set[str] = set()
    ordered = []
    for doc in ranked:
        if doc not in seen:
            seen.add(doc)
            ordered.append(doc)
    return ordered


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain: the gain at rank r (from 1) counts gain / log2(r + 1)."""
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, start=1))


def ndcg_at_k(ranked: Sequence[str], qrels: Qrels, k: int = 10) -> float:
    """nDCG@k with linear graded gains (as trec_eval and BEIR); 0.0 when nothing is judged relevant."""
    ideal = dcg(sorted((g for g in qrels.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([max(qrels.get(d, 0), 0) for d in distinct(ranked)[:k]]) / ideal


def mrr_at_k(ranked: Sequence[str], qrels: Qrels, k: int = 10) -> float:
    """1 / rank of the first relevant document in the top `k`, else 0.0."""
    for rank, doc in enumerate(distinct(ranked)[:k], start=1):
        if qrels.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranked: Sequence[str], qrels: Qrels, k: int) -> float:
    """Share of the relevant documents found in the top `k`; 0.0 when nothing is judged relevant."""
    relevant = {d for d, g in qrels.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(distinct(ranked)[:k])) / len(relevant)


def normalise(text: str) -> str:
    """Case-folded text with every run of whitespace turned into one space."""
    return " ".join(text.casefold().split())


def contains_answer(quote: str, answers: Sequence[str]) -> bool:
    """True when the quote holds any of the gold answers (case-insensitive, whitespace-normalised)."""
    quote = normalise(quote)
    return any(normalise(a) and normalise(a) in quote for a in answers)


def mean(values: Sequence[float]) -> float | None:
    """The arithmetic mean, or None for no values (an empty table has no score, not a zero)."""
    return sum(values) / len(values) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0–100) with linear interpolation between ranks, as numpy's default."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def abstention_rates(answerable: Sequence[bool], abstained: Sequence[bool]) -> dict:
    """How often an answerable question was declined and an unanswerable one answered.

    The two error rates `Settings.min_score` trades against each other; a rate is None when
    the data holds no question of that kind.
    """
    if len(answerable) != len(abstained):
        raise ValueError(f"{len(answerable)} answerable flags but {len(abstained)} abstained flags")
    declined = [a for ok, a in zip(answerable, abstained) if ok]
    answered = [not a for ok, a in zip(answerable, abstained) if not ok]
    return {
        "answerable": len(declined),
        "unanswerable": len(answered),
        "declined_answerable": mean([float(d) for d in declined]),
        "answered_unanswerable": mean([float(a) for a in answered]),
    }


def threshold_sweep(
    answerable: Sequence[bool], best_scores: Sequence[float], thresholds: Sequence[float]
) -> list[dict]:
    """Abstention rates had the pipeline abstained whenever its best score was below each threshold."""
    return [{"threshold": t, **abstention_rates(answerable, [score < t for score in best_scores])} for t in thresholds]

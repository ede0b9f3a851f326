"""Retrieval and answer metrics against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from rag.eval.metrics import (
    abstention_rates,
    contains_answer,
    dcg,
    distinct,
    mean,
    mrr_at_k,
    ndcg_at_k,
    percentile,
    recall_at_k,
    threshold_sweep,
)

D2 = 1 / math.log2(3)  # the discount at rank 2
ELEVEN = [f"x{i}" for i in range(10)] + ["a"]  # the one relevant document comes 11th

# ranked, qrels, nDCG@10, MRR@10, recall@10, recall@100
RANKINGS = [
    ("relevant first", ["a", "x", "y"], {"a": 1}, 1.0, 1.0, 1.0, 1.0),
    ("relevant second", ["x", "a", "y"], {"a": 1}, D2, 0.5, 1.0, 1.0),
    ("graded, swapped", ["b", "a"], {"a": 2, "b": 1}, (1 + 2 * D2) / (2 + D2), 1.0, 1.0, 1.0),
    ("graded, ideal order", ["a", "b"], {"a": 2, "b": 1}, 1.0, 1.0, 1.0, 1.0),
    ("nothing relevant retrieved", ["x", "y", "z"], {"a": 1, "b": 2}, 0.0, 0.0, 0.0, 0.0),
    ("no results at all", [], {"a": 1}, 0.0, 0.0, 0.0, 0.0),
    ("fewer than k, one of two found", ["a"], {"a": 1, "b": 1}, 1 / (1 + D2), 1.0, 0.5, 0.5),
    ("duplicate ahead shifts nothing", ["x", "x", "a"], {"a": 1}, D2, 0.5, 1.0, 1.0),
    ("duplicates of a relevant one count once", ["a", "a", "a"], {"a": 1, "b": 1}, 1 / (1 + D2), 1.0, 0.5, 0.5),
    ("relevant just past the cut", ELEVEN, {"a": 1}, 0.0, 0.0, 0.0, 1.0),
    ("zero-graded judgement is not relevant", ["a", "b"], {"a": 0, "b": 1}, D2, 0.5, 1.0, 1.0),
    ("negative grade counts as zero", ["a", "b"], {"a": -1, "b": 1}, D2, 0.5, 1.0, 1.0),
    ("nothing judged relevant", ["a", "b"], {}, 0.0, 0.0, 0.0, 0.0),
    (
        "more relevant than k, all on top",
        [f"r{i}" for i in range(12)],
        {f"r{i}": 1 for i in range(12)},
        1.0,
        1.0,
        10 / 12,
        1.0,
    ),
]


@pytest.mark.parametrize("ranked, qrels, ndcg, mrr, r10, r100", [r[1:] for r in RANKINGS], ids=[r[0] for r in RANKINGS])
def test_ranking_metrics_match_hand_computed_values(ranked, qrels, ndcg, mrr, r10, r100):
    assert ndcg_at_k(ranked, qrels, 10) == pytest.approx(ndcg)
    assert mrr_at_k(ranked, qrels, 10) == pytest.approx(mrr)
    assert recall_at_k(ranked, qrels, 10) == pytest.approx(r10)
    assert recall_at_k(ranked, qrels, 100) == pytest.approx(r100)


def test_ndcg_with_three_grades_at_a_small_cut():
    ranked = ["c", "x", "a", "b"]
    qrels = {"a": 3, "b": 2, "c": 1}
    # DCG@3 = 1/1 + 0 + 3/log2(4); ideal DCG@3 = 3/1 + 2/log2(3) + 1/log2(4)
    assert ndcg_at_k(ranked, qrels, 3) == pytest.approx((1 + 3 / 2) / (3 + 2 * D2 + 1 / 2))
    assert ndcg_at_k(ranked, qrels, 1) == pytest.approx(1 / 3)


def test_dcg_and_distinct():
    assert dcg([]) == 0.0
    assert dcg([1, 1, 1]) == pytest.approx(1 + D2 + 0.5)
    assert distinct(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


@pytest.mark.parametrize(
    "quote, answers, expected",
    [
        ("The kettle was made in 1990.", ["1990"], True),
        ("The KETTLE was made in 1990.", ["kettle was"], True),
        ("It was\n built   in  Paris.", ["built in paris"], True),
        ("It was built in Paris.", ["London", "Paris"], True),
        ("It was built in Paris.", ["London"], False),
        ("It was built in Paris.", [], False),
        ("It was built in Paris.", ["", "   "], False),
        ("", ["Paris"], False),
    ],
)
def test_contains_answer(quote, answers, expected):
    assert contains_answer(quote, answers) is expected


@pytest.mark.parametrize(
    "values, q, expected",
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 95, 3.85),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([7.0], 95, 7.0),
        ([], 50, None),
    ],
)
def test_percentile_interpolates_like_numpy(values, q, expected):
    assert percentile(values, q) == (pytest.approx(expected) if expected is not None else None)


def test_mean_of_nothing_is_none_not_zero():
    assert mean([]) is None
    assert mean([1.0, 0.0]) == 0.5


@pytest.mark.parametrize(
    "answerable, abstained, declined, answered",
    [
        ([True, True, False, False], [False, True, False, True], 0.5, 0.5),
        ([True, True, True], [False, False, False], 0.0, None),
        ([False, False], [True, True], None, 0.0),
        ([True, False, False, False], [True, False, False, True], 1.0, 2 / 3),
        ([], [], None, None),
    ],
)
def test_abstention_rates(answerable, abstained, declined, answered):
    rates = abstention_rates(answerable, abstained)
    assert rates["answerable"] == sum(answerable)
    assert rates["unanswerable"] == len(answerable) - sum(answerable)
    assert rates["declined_answerable"] == (pytest.approx(declined) if declined is not None else None)
    assert rates["answered_unanswerable"] == (pytest.approx(answered) if answered is not None else None)


def test_abstention_rates_refuse_lists_of_different_lengths():
    with pytest.raises(ValueError, match="2 answerable flags but 1"):
        abstention_rates([True, False], [True])


def test_threshold_sweep_trades_one_error_for_the_other():
    answerable = [True, True, False, False]
    best = [0.8, 0.4, 0.5, 0.2]
    sweep = threshold_sweep(answerable, best, [0.0, 0.45, 0.9])
    assert [s["threshold"] for s in sweep] == [0.0, 0.45, 0.9]
    assert [s["declined_answerable"] for s in sweep] == [0.0, 0.5, 1.0]
    assert [s["answered_unanswerable"] for s in sweep] == [1.0, 0.5, 0.0]

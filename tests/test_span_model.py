"""The fitted span model: candidate spans, their features, the shipped parameters (logic only, no embedder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_answer_types import SYRIA, VESTNIK  # the seed sentences of issue 13, written once

from rag.answer.span_model import (
    FEATURES,
    KINDS,
    MAX_WORDS,
    MODEL_FILE,
    SpanModel,
    best_span,
    best_span_score,
    candidates,
    load_span_model,
    question_kind,
)
from rag.errors import ConfigError


@pytest.mark.parametrize(
    "question, kind",
    [
        ("When did it start?", "date"),
        ("How many steps are there?", "number"),
        ("Who built it?", "name"),
        ("Where did they meet?", "place"),
        ("In which city was she born?", "place"),
        ("Why did it fail?", "why"),
        ("What colour is the lighthouse?", "other"),
    ],
)
def test_question_kind(question, kind):
    assert question_kind(question) == kind


def test_candidates_are_short_slices_that_are_not_only_the_question_words():
    sentence = "The Hoover Dam was finished in 1936 after five years."
    spans, rows = candidates("When was the Hoover Dam finished?", sentence)
    assert rows.shape == (len(spans), len(FEATURES))
    texts = [sentence[a:b] for a, b in spans]
    assert "1936" in texts and "in 1936" in texts
    assert "Hoover Dam" not in texts and "finished" not in texts  # only the question's own words
    assert all(len(t.split()) <= MAX_WORDS for t in texts)
    assert all(t == t.strip() and t for t in texts)


def test_no_candidates_without_words():
    spans, rows = candidates("When?", " .,; ")
    assert spans == [] and rows.shape == (0, len(FEATURES))
    assert best_span("When?", "") is None
    assert best_span_score("When?", "") < 0


@pytest.mark.parametrize(
    "question, sentence, marked",
    [
        ("When did the Russian military operation in Syria start?", SYRIA, "September 30, 2015"),
        ("Which outlet did Baklanov give the interview to?", VESTNIK, "Vestnik Kavkaza"),
        ("When was the Hoover Dam finished?", "The Hoover Dam was finished in 1936.", "1936"),
        ("Who founded the company?", "The company was founded by Steve Jobs in 1976.", "Steve Jobs"),
    ],
)
def test_the_shipped_model_marks_the_answer(question, sentence, marked):
    span = best_span(question, sentence)
    assert span is not None
    found = sentence[span[0] : span[1]]
    assert marked in found and len(found.split()) <= len(marked.split()) + 3, found  # the fit's --slack


def test_a_model_prefers_what_its_weights_say():
    """A model that only rewards a digit picks the number, one that only rewards capitals picks the name."""
    sentence = "The company was founded by Steve Jobs in 1976."

    def model(feature):
        weights = np.zeros((len(KINDS), len(FEATURES)))
        weights[:, FEATURES.index(feature)] = 1.0
        weights[:, FEATURES.index("one_word")] = 0.5
        return SpanModel(np.zeros(len(FEATURES)), np.ones(len(FEATURES)), weights)

    digits = best_span("Who founded the company?", sentence, model("digits"))
    assert sentence[digits[0] : digits[1]] == "1976"
    capitals = best_span("Who founded the company?", sentence, model("capitals"))
    assert sentence[capitals[0] : capitals[1]] in ("Steve", "Jobs", "The")


def test_the_shipped_file_matches_the_features_and_was_written_by_the_script():
    spec = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    assert spec["features"] == list(FEATURES) and spec["kinds"] == list(KINDS)
    assert "training/fit_span_model.py" in spec["command"]
    assert set(spec["weights"]) == set(KINDS)
    assert all(len(w) == len(FEATURES) for w in spec["weights"].values())
    assert len(spec["mean"]) == len(spec["scale"]) == len(FEATURES)


def test_a_damaged_model_file_is_named_with_its_fix(tmp_path):
    path = tmp_path / "span_model.json"
    path.write_text('{"features": ["nope"]}', encoding="utf-8")
    with pytest.raises(ConfigError, match="fit_span_model.py"):
        load_span_model(path)

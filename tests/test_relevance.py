"""Features of candidate sentences and the fitted answer model, with the fake embedder (logic only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tomllib
from fakes import FakeEmbedder

from rag.answer.candidates import candidate_sentences, sentence_cosines
from rag.answer.relevance import (
    FEATURES,
    MODEL_FILE,
    MODES,
    NEEDS_SENTENCE_SCORING,
    feature_rows,
    key_terms,
    load_model,
)
from rag.errors import ConfigError
from rag.types import Hit, Passage

TEXT = "The Hoover Dam was finished in 1936. It holds back Lake Mead. Was it costly?"
OTHER = "Puffins nest on cliffs. They eat small fish."
QUESTION = "When was the Hoover Dam finished?"


def sentences():
    dam = Passage("dams.txt#1", "dams.txt", 0, len(TEXT), 1, 1, TEXT)
    birds = Passage("birds.md#1", "birds.md", 0, len(OTHER), 1, 1, OTHER)
    return candidate_sentences([Hit(dam, 0.8, dense=0.7, lexical=4.0), Hit(birds, 0.2, dense=0.1, lexical=0.0)])


def column(rows, name):
    return rows[:, FEATURES.index(name)].tolist()


@pytest.fixture
def rows():
    fake = FakeEmbedder()
    found = sentences()
    cosines, clauses = sentence_cosines(found, fake.encode([QUESTION])[0], fake)
    return feature_rows(QUESTION, found, cosines, clauses)


def test_candidate_sentences_are_each_sentence_once_with_its_place():
    found = sentences()
    assert [s.text for s in found] == [
        "The Hoover Dam was finished in 1936.",
        "It holds back Lake Mead.",
        "Was it costly?",
        "Puffins nest on cliffs.",
        "They eat small fish.",
    ]
    assert [(s.passage_rank, s.index, s.count) for s in found] == [
        (0, 0, 3),
        (0, 1, 3),
        (0, 2, 3),
        (1, 0, 2),
        (1, 1, 2),
    ]
    assert all(s.hit.passage.text[s.start - s.hit.passage.start : s.end - s.hit.passage.start] == s.text for s in found)
    repeated = candidate_sentences([sentences()[0].hit, sentences()[0].hit])  # an overlapping passage repeats them
    assert len(repeated) == 3


def test_feature_rows_describe_each_sentence(rows):
    assert rows.shape == (5, len(FEATURES)) and np.isfinite(rows).all()
    assert column(rows, "cosine_rank")[0] == 1.0 and column(rows, "cosine_gap")[0] == 0.0
    assert column(rows, "overlap") == [1.0, 0.0, 0.0, 0.0, 0.0]  # hoover, dam, finish: all in the first
    assert column(rows, "sentence_bm25")[0] == 1.0 and max(column(rows, "sentence_bm25")[1:]) == 0.0
    assert column(rows, "holds_type") == [1.0, 0.0, 0.0, 0.0, 0.0]  # the date asked for
    assert column(rows, "asks_date") == [1.0] * 5 and column(rows, "asks_name") == [0.0] * 5
    assert column(rows, "is_question") == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert column(rows, "first_in_passage") == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert column(rows, "position") == [0.0, 0.5, 1.0, 0.0, 1.0]
    assert column(rows, "passage_rank") == [1.0, 1.0, 1.0, 0.5, 0.5]
    assert column(rows, "passage_bm25") == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert column(rows, "passage_cosine") == pytest.approx([0.7, 0.7, 0.7, 0.1, 0.1])
    assert column(rows, "key_terms_in_passage") == [1.0, 1.0, 1.0, 0.0, 0.0]  # Hoover, Dam
    assert column(rows, "date_held") == [1.0, 0.0, 0.0, 0.0, 0.0]  # a "when" question, a date held
    assert column(rows, "number_held") == [0.0] * 5 and column(rows, "name_near") == [0.0] * 5


def test_a_name_question_weighs_how_near_the_name_stands_to_its_words():
    found = sentences()
    rows = feature_rows("Which lake does the Hoover Dam hold back?", found)
    near = column(rows, "name_near")
    assert near[1] > 0 and near[1] == column(rows, "typed_near")[1]  # "Lake Mead", beside "holds back"
    assert column(rows, "place_near") == [0.0] * 5 and column(rows, "date_held") == [0.0] * 5


def test_without_sentence_scoring_the_sentence_columns_are_zero():
    rows = feature_rows(QUESTION, sentences())
    for name in NEEDS_SENTENCE_SCORING:
        assert column(rows, name) == [0.0] * 5
    assert column(rows, "overlap")[0] == 1.0


def test_no_sentences_no_rows():
    assert feature_rows(QUESTION, []).shape == (0, len(FEATURES))


@pytest.mark.parametrize(
    "question, keys",
    [
        ("When did the Russian operation in Syria start in 2015?", {"russian", "syria", "2015"}),
        ("Who is Baklanov's deputy?", {"baklanov"}),
        ("What is ice?", set()),
    ],
)
def test_key_terms_are_the_names_and_numbers_after_the_first_word(question, keys):
    assert key_terms(question) == keys


@pytest.mark.parametrize("mode", MODES)
def test_the_shipped_model_loads_for_each_mode_and_gives_probabilities(rows, mode):
    model = load_model(mode)
    assert set(model.features) <= set(FEATURES) and len(model.weights) == len(model.features)
    if mode == "passage_only":
        assert not set(model.features) & NEEDS_SENTENCE_SCORING
    assert 0.0 < model.threshold < 1.0
    relevance = model.relevance(rows)
    assert ((relevance > 0) & (relevance < 1)).all()
    assert relevance[0] == relevance.max()  # the sentence holding the date, with every question word


def test_the_model_file_is_package_data_written_by_its_script():
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert MODEL_FILE.name in pyproject["tool"]["setuptools"]["package-data"]["rag.models"]
    spec = json.loads(MODEL_FILE.read_text())
    assert "training/fit_answer_model.py" in spec["command"] and set(spec["modes"]) == set(MODES)


def test_an_unreadable_model_file_is_named(tmp_path):
    broken = tmp_path / "model.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="model.json cannot be read"):
        load_model("sentence_scoring", broken)

"""Quote choice, verification, abstention and follow-ups, on small corpora with the fake embedder."""

from __future__ import annotations

import pytest

from conftest import write_corpus
from fakes import FakeEmbedder
from rag.answer import (
    NO_ANSWER,
    NOT_A_QUESTION,
    Candidate,
    answer,
    choose_quotes,
    clean_question,
    contextualize,
    expected_answer_type,
)
from rag.indexer import build
from rag.records import Hit, Passage
from rag.retrieve import Retriever


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("  What   is it? ", "What is it?"),
        ("tab\there\nnew", "tab here new"),
        ("nul\x00byte\x07bell", "nul byte bell"),
        ("", ""),
        (None, ""),
        ("x" * 5000, "x" * 2000),
        ("Что это? 这是什么 🙂", "Что это? 这是什么 🙂"),
    ],
)
def test_clean_question(raw, cleaned):
    assert clean_question(raw) == cleaned


@pytest.mark.parametrize(
    "question, history, searched",
    [
        ("When did the war start?", [], "When did the war start?"),
        ("and when did it start?", ["What was the Crimean War?"], "What was the Crimean War? and when did it start?"),
        ("Why?", ["Who founded the company?"], "Who founded the company? Why?"),
        ("What did they sign there?", ["Where did the two leaders meet in 1945?"], "Where did the two leaders meet in 1945? What did they sign there?"),
        ("What is the boiling point of water at sea level in Celsius?", ["Who founded the company?"], "What is the boiling point of water at sea level in Celsius?"),
        ("How do glaciers carve valleys over thousands of years?", ["What is ice?"], "How do glaciers carve valleys over thousands of years?"),
    ],
)
def test_follow_up_questions_are_searched_with_the_conversation(question, history, searched):
    assert contextualize(question, history) == searched


@pytest.mark.parametrize(
    "question, sentence, matches",
    [
        ("When did the operation begin?", "It began on September 30, 2015.", True),
        ("In what year was it built?", "It was built in 1889.", True),
        ("When did the operation begin?", "It began after the talks.", False),
        ("How many people live there?", "About 60,000 people live there.", True),
        ("How many people live there?", "Twelve thousand people live there.", True),
        ("How many people live there?", "Many people live there.", False),
        ("Why did it fail?", "It failed in 1990.", None),
    ],
)
def test_expected_answer_type(question, sentence, matches):
    pattern = expected_answer_type(question)
    if matches is None:
        assert pattern is None
    else:
        assert bool(pattern.search(sentence)) is matches


def _candidate(source, start, text, score, passage_n=1):
    passage = Passage(f"{source}#{passage_n}", source, 0, 1000, 1, 9, "")
    return Candidate(Hit(passage, score), start, start + len(text), text, score, score)


def test_choose_quotes_skips_repeats_near_duplicates_and_weak_sentences():
    candidates = [
        _candidate("a.txt", 0, "The dam was finished in 1936 after five years.", 0.90),
        _candidate("a.txt", 0, "The dam was finished in 1936 after five years.", 0.89, passage_n=2),  # same place
        _candidate("b.txt", 50, "The dam was finished in 1936, after five years.", 0.88),  # near-duplicate
        _candidate("c.txt", 10, "Workers poured concrete day and night.", 0.85),
        _candidate("d.txt", 10, "Tourists visit the dam in summer.", 0.70),  # far below the best
    ]
    chosen = choose_quotes(candidates, limit=3)
    assert [(c.hit.passage.source, c.text) for c in chosen] == [
        ("a.txt", "The dam was finished in 1936 after five years."),
        ("c.txt", "Workers poured concrete day and night."),
    ]


def test_choose_quotes_prefers_other_sources_for_a_second_quote():
    candidates = [
        _candidate("a.txt", 0, "Alpha fact one about rivers.", 0.90),
        _candidate("a.txt", 100, "Alpha fact two about lakes.", 0.82),  # same file, clearly weaker
        _candidate("b.txt", 0, "Beta fact about oceans.", 0.81),
    ]
    assert [c.hit.passage.source for c in choose_quotes(candidates, limit=3)] == ["a.txt", "b.txt"]


def test_a_same_file_sentence_holding_the_asked_for_date_is_quoted_when_the_best_one_lacks_it():
    candidates = [
        _candidate("a.txt", 0, "The military operation in Syria starts a new stage.", 0.76),
        _candidate("a.txt", 100, "The tasks were set on September 30, 2015.", 0.69),  # same file, weaker
    ]
    date = expected_answer_type("When did the operation start?")
    assert [c.text for c in choose_quotes(candidates, limit=3)] == [candidates[0].text]
    assert [c.text for c in choose_quotes(candidates, limit=3, wanted=date)] == [c.text for c in candidates]


def test_the_answer_type_exception_needs_the_floor_and_stops_once_a_quote_holds_the_answer():
    date = expected_answer_type("When did the operation start?")
    below_floor = [
        _candidate("a.txt", 0, "The military operation in Syria starts a new stage.", 0.80),
        _candidate("a.txt", 100, "It rained in May 1990.", 0.60),
    ]
    assert len(choose_quotes(below_floor, limit=3, wanted=date)) == 1
    already_dated = [
        _candidate("a.txt", 0, "The operation started in 2015, says the army.", 0.80),
        _candidate("a.txt", 100, "The tasks were set on September 30, 2015.", 0.73),
    ]
    assert len(choose_quotes(already_dated, limit=3, wanted=date)) == 1


def test_choose_quotes_respects_the_limit_and_empty_input():
    words = "rivers lakes oceans glaciers deserts forests meadows canyons islands volcanoes".split()
    many = [_candidate(f"{i}.txt", 0, f"A fact about {word}.", 0.9 - i / 1000) for i, word in enumerate(words)]
    assert len(choose_quotes(many, limit=3)) == 3
    assert choose_quotes([], limit=3) == []


@pytest.fixture
def small(make_settings):
    settings = make_settings(min_score=0.5)
    write_corpus(
        settings.corpus,
        {
            "dams.txt": "The Hoover Dam was finished in 1936. It holds back Lake Mead.\n\nTourists visit it in summer.",
            "birds.md": "# Birds\n\nPuffins nest on cliffs. They eat small fish.",
        },
    )
    fake = FakeEmbedder()
    build(settings, embedder_factory=lambda name: fake)
    return settings, Retriever(settings, embedder_factory=lambda name: fake)


def test_answer_quotes_verified_sentences_with_markers(small):
    settings, retriever = small
    result = answer("When was the Hoover Dam finished?", retriever, settings)
    assert not result.abstained
    first = result.citations[0]
    assert first.quote == "The Hoover Dam was finished in 1936. It holds back Lake Mead."  # widened by one
    assert (first.source, first.line_start, first.line_end) == ("dams.txt", 1, 1)
    text = (settings.corpus / "dams.txt").read_text(encoding="utf-8")
    assert text[first.start : first.end] == first.quote
    assert result.text.startswith(f"“{first.quote}” [1]")
    assert 0 < result.confidence <= 1


def test_quote_context_zero_quotes_the_sentence_alone(small):
    settings, retriever = small
    result = answer("When was the Hoover Dam finished?", retriever, settings.replace(quote_context=0))
    assert result.citations[0].quote == "The Hoover Dam was finished in 1936."


PARAGRAPHS = "One alpha. Two beta. Three gamma.\n\nFour delta. Five epsilon."


@pytest.mark.parametrize(
    "sentence, context, max_chars, quote",
    [
        ("Two beta.", 0, 600, "Two beta."),
        ("Two beta.", 1, 600, "One alpha. Two beta. Three gamma."),
        ("Two beta.", 1, 25, "Two beta. Three gamma."),  # the next sentence first, then the budget ends
        ("Three gamma.", 1, 600, "Two beta. Three gamma."),  # never across the paragraph break
        ("Four delta.", 2, 600, "Four delta. Five epsilon."),
        ("One alpha.", 2, 600, "One alpha. Two beta. Three gamma."),
    ],
)
def test_widen_adds_neighbouring_sentences_of_the_same_paragraph(sentence, context, max_chars, quote):
    from rag.answer import widen

    passage = Passage("p.txt#1", "p.txt", 100, 100 + len(PARAGRAPHS), 1, 3, PARAGRAPHS)
    start = 100 + PARAGRAPHS.index(sentence)
    candidate = Candidate(Hit(passage, 1.0), start, start + len(sentence), sentence, 1.0, 1.0)
    wide = widen(candidate, context, max_chars)
    assert wide.text == quote
    assert PARAGRAPHS[wide.start - 100 : wide.end - 100] == quote


def test_answer_abstains_below_the_threshold_and_lists_nearest_for_reference(small):
    settings, retriever = small
    result = answer("Quantum chromodynamics lattice gauge?", retriever, settings)
    assert result.abstained and result.citations == ()
    assert result.text.startswith(NO_ANSWER) and len(result.nearest) >= 1


@pytest.mark.parametrize("question", ["", "   ", "?!?", "…", "\x00\x01"])
def test_answer_to_no_words_asks_for_a_question(small, question):
    settings, retriever = small
    result = answer(question, retriever, settings)
    assert (result.abstained, result.text) == (True, NOT_A_QUESTION)


def test_a_quote_whose_file_changed_is_dropped(small):
    settings, retriever = small
    (settings.corpus / "dams.txt").write_text("Rewritten. The Hoover Dam was finished in 1936.")
    result = answer("When was the Hoover Dam finished?", retriever, settings)
    assert result.citations or result.abstained  # some answer came back, and none of it is the stale quote
    for c in result.citations:
        assert c.source != "dams.txt" or (settings.corpus / "dams.txt").read_text()[c.start : c.end] == c.quote


def test_answer_json_shape(small):
    settings, retriever = small
    data = answer("Puffins nest on which cliffs?", retriever, settings).to_dict()
    assert set(data) == {"question", "answer", "abstained", "searched_for", "confidence", "citations", "nearest"}
    assert data["citations"][0]["source"] == "birds.md"

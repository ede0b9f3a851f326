"""Quote choice, verification, abstention and follow-ups, on small corpora with the fake embedder."""

from __future__ import annotations

import pytest
from conftest import write_corpus
from fakes import FakeEmbedder

from rag.answer.candidates import Candidate
from rag.answer.follow_up import contextualize, is_follow_up, refers_back
from rag.answer.quotes import (
    NO_ANSWER,
    NOT_A_QUESTION,
    answer,
    choose_quotes,
    clean_question,
    mark_answer,
    threshold,
    with_context,
)
from rag.build.indexer import build
from rag.index import store
from rag.search import Retriever
from rag.types import Hit, Passage


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("  What   is it? ", "What is it?"),
        ("tab\there\nnew", "tab here new"),
        ("nul\x00byte\x07bell", "nul byte bell"),
        ("", ""),
        (None, ""),
        ("x" * 5000, "x" * 5000),  # not cut: a question over the limit is refused before it is cleaned
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
        (
            "What did they sign there?",
            ["Where did the two leaders meet in 1945?"],
            "Where did the two leaders meet in 1945? What did they sign there?",
        ),
        ("What about Paris?", ["How many people live in Lyon?"], "How many people live in Lyon? What about Paris?"),
        (
            "What is the boiling point of water at sea level in Celsius?",
            ["Who founded the company?"],
            "What is the boiling point of water at sea level in Celsius?",
        ),
        (
            "How do glaciers carve valleys over thousands of years?",
            ["What is ice?"],
            "How do glaciers carve valleys over thousands of years?",
        ),
        # short but complete: not a follow-up, whatever its word count
        ("When does the backup run?", ["How do I reset my password?"], "When does the backup run?"),
        ("Is there a fee?", ["Where is the museum?"], "Is there a fee?"),
    ],
)
def test_follow_up_questions_are_searched_with_the_conversation(question, history, searched):
    assert contextualize(question, history) == searched


@pytest.mark.parametrize(
    "question, refers",
    [
        ("Why?", True),
        ("And in 2016?", True),
        ("also the second one", True),
        ("What happened to them?", True),
        ("When did he die?", True),
        ("How tall is it?", True),
        ("What was built there?", True),
        ("When does the backup run?", False),
        ("Is there a fee for students?", False),
        ("There are two bridges; which is older?", False),
        ("Who founded the company?", False),
    ],
)
def test_refers_back(question, refers):
    assert refers_back(question) is refers


@pytest.mark.parametrize(
    "question, previous, follows",
    [
        ("When was the Hoover Dam finished?", "Hoover Dam finished when", True),  # nearly the same words
        ("When does the backup run?", "How do I reset my password?", False),
        ("Puffins nest on which cliffs?", "When was the Hoover Dam finished?", False),
    ],
)
def test_is_follow_up_by_meaning_with_the_fake_embedder(fake, question, previous, follows):
    assert is_follow_up(question, previous, fake) is follows


def _candidate(source, start, text, relevance, passage_n=1):
    passage = Passage(f"{source}#{passage_n}", source, 0, 1000, 1, 9, "")
    return Candidate(Hit(passage, relevance), start, start + len(text), text, relevance)


def test_choose_quotes_skips_repeats_near_duplicates_and_weak_sentences():
    candidates = [
        _candidate("a.txt", 0, "The dam was finished in 1936 after five years.", 0.90),
        _candidate("a.txt", 0, "The dam was finished in 1936 after five years.", 0.89, passage_n=2),  # same place
        _candidate("b.txt", 50, "The dam was finished in 1936, after five years.", 0.88),  # near-duplicate
        _candidate("c.txt", 10, "Workers poured concrete day and night.", 0.65),
        _candidate("d.txt", 10, "Tourists visit the dam in summer.", 0.30),  # under half the best
    ]
    chosen = choose_quotes(candidates, limit=3)
    assert [(c.hit.passage.source, c.text) for c in chosen] == [
        ("a.txt", "The dam was finished in 1936 after five years."),
        ("c.txt", "Workers poured concrete day and night."),
    ]


def test_choose_quotes_prefers_other_sources_for_a_second_quote():
    candidates = [
        _candidate("a.txt", 0, "Alpha fact one about rivers.", 0.90),
        _candidate("a.txt", 100, "Alpha fact two about lakes.", 0.60),  # same file, clearly weaker
        _candidate("b.txt", 0, "Beta fact about oceans.", 0.55),
        _candidate("a.txt", 200, "Alpha fact three about seas.", 0.80),  # same file, nearly as good
    ]
    assert [c.text for c in choose_quotes(candidates, limit=3)] == [
        "Alpha fact one about rivers.",
        "Alpha fact three about seas.",
        "Beta fact about oceans.",
    ]


def test_choose_quotes_orders_by_relevance_and_keeps_further_quotes_above_the_threshold():
    candidates = [
        _candidate("b.txt", 0, "Second best sentence here.", 0.50),
        _candidate("a.txt", 0, "Best sentence of all.", 0.70),
    ]
    assert [c.relevance for c in choose_quotes(candidates, limit=3)] == [0.70, 0.50]
    assert [c.relevance for c in choose_quotes(candidates, limit=3, floor=0.6)] == [0.70]


def test_choose_quotes_respects_the_limit_and_empty_input():
    words = "rivers lakes oceans glaciers deserts forests meadows canyons islands volcanoes".split()
    many = [_candidate(f"{i}.txt", 0, f"A fact about {word}.", 0.9 - i / 1000) for i, word in enumerate(words)]
    assert len(choose_quotes(many, limit=3)) == 3
    assert choose_quotes([], limit=3) == []


@pytest.fixture
def small(make_settings):
    settings = make_settings(min_score=0.1)
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


def test_answer_quotes_the_answering_sentence_with_its_context_and_the_answer_marked(small):
    settings, retriever = small
    result = answer("When was the Hoover Dam finished?", retriever, settings)
    assert not result.abstained
    first = result.citations[0]
    assert first.quote == "The Hoover Dam was finished in 1936."  # the sentence, not its neighbours
    assert (first.context_before, first.context_after) == ("", " It holds back Lake Mead.")
    assert (first.source, first.line_start, first.line_end) == ("dams.txt", 1, 1)
    text = (settings.corpus / "dams.txt").read_text(encoding="utf-8")
    assert text[first.start : first.end] == first.quote
    assert text[first.answer_start : first.answer_end] == first.answer == "1936"
    assert first.start <= first.answer_start < first.answer_end <= first.end
    assert result.text.startswith(f"“{first.quote}” [1]")
    assert 0 < result.relevance <= 1 and first.relevance == result.relevance


def test_quote_context_zero_shows_no_context(small):
    settings, retriever = small
    result = answer("When was the Hoover Dam finished?", retriever, settings.replace(quote_context=0))
    first = result.citations[0]
    assert (first.quote, first.context_before, first.context_after) == ("The Hoover Dam was finished in 1936.", "", "")


PARAGRAPHS = "One alpha. Two beta. Three gamma.\n\nFour delta. Five epsilon."


@pytest.mark.parametrize(
    "sentence, context, max_chars, shown",
    [
        ("Two beta.", 0, 600, "Two beta."),
        ("Two beta.", 1, 600, "One alpha. Two beta. Three gamma."),
        ("Two beta.", 1, 25, "Two beta. Three gamma."),  # the next sentence first, then the budget ends
        ("Three gamma.", 1, 600, "Two beta. Three gamma."),  # never across the paragraph break
        ("Four delta.", 2, 600, "Four delta. Five epsilon."),
        ("One alpha.", 2, 600, "One alpha. Two beta. Three gamma."),
    ],
)
def test_context_takes_neighbouring_sentences_of_the_same_paragraph(sentence, context, max_chars, shown):
    passage = Passage("p.txt#1", "p.txt", 100, 100 + len(PARAGRAPHS), 1, 3, PARAGRAPHS)
    start = 100 + PARAGRAPHS.index(sentence)
    candidate = Candidate(Hit(passage, 1.0), start, start + len(sentence), sentence, 1.0)
    wide = with_context(candidate, context, max_chars)
    assert (wide.start, wide.end, wide.text) == (candidate.start, candidate.end, sentence)  # the quote stays
    assert PARAGRAPHS[wide.context_start - 100 : wide.context_end - 100] == shown


def test_the_threshold_is_the_calibrated_one_unless_min_score_is_set(make_settings):
    from rag.answer.relevance import load_model

    settings = make_settings()
    assert threshold(settings) == load_model("sentence_scoring").threshold
    off = settings.replace(**{("sentence_scoring" if hasattr(settings, "sentence_scoring") else "rerank"): False})
    assert threshold(off) == load_model("passage_only").threshold
    assert threshold(settings.replace(min_score=0.3)) == 0.3


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
    assert set(data) == {"question", "answer", "abstained", "searched_for", "relevance", "citations", "nearest"}
    first = data["citations"][0]
    assert first["source"] == "birds.md"
    assert set(first) >= {"relevance", "context_before", "context_after", "answer_start", "answer_end"}


def _sentence_candidate(text: str) -> Candidate:
    passage = Passage("notes.txt#1", "notes.txt", 100, 100 + len(text), 3, 3, text)
    return Candidate(Hit(passage, 0.5, dense=0.5, lexical=1.0), 100, 100 + len(text), text, 0.5)


@pytest.mark.parametrize(
    "question, sentence, marked",
    [
        ("When was the Hoover Dam finished?", "The Hoover Dam was finished in 1936 after five years.", "1936"),
        ("How many steps does the keeper climb?", "The keeper climbs ninety steps every evening.", "ninety steps"),
        ("When did the operation begin?", "The operation began on 3 May 1990, after long talks.", "3 May 1990"),
        ("When did the operation begin?", "The operation begins.", None),  # nothing but the question's words
    ],
)
def test_mark_answer_marks_a_slice_of_the_quote(question, sentence, marked):
    found = mark_answer(_sentence_candidate(sentence), question)
    if marked is None:
        assert found.answer_start is None and found.answer_end is None
        return
    inside = sentence[found.answer_start - 100 : found.answer_end - 100]
    assert 100 <= found.answer_start < found.answer_end <= 100 + len(sentence)
    assert marked in inside and len(inside.split()) <= len(marked.split()) + 3, (
        inside
    )  # training/fit_span_model.py --slack


def test_a_document_replaced_through_the_chat_answers_from_its_indexed_version_until_the_new_one_is_published(small):
    """The upload keeps the earlier bytes (rag.index.kept): quotes are verified against them; the build that
    indexes the new version lets them go."""
    from rag.index import kept
    from rag.serve.uploads import add_document

    settings, retriever = small
    question = "When was the Hoover Dam finished?"
    before = answer(question, retriever, settings)
    assert before.citations and before.citations[0].source == "dams.txt"
    new = b"The Hoover Dam opened to visitors in 1937, a year after work ended.\n"
    _, replaced = add_document(
        settings.corpus, "dams.txt", new, settings.extensions, 10_000, keep=lambda p: kept.keep(settings.index, p)
    )
    assert replaced
    during = answer(question, retriever, settings)  # the index still holds the earlier version
    assert [(c.source, c.start, c.end, c.quote) for c in during.citations] == [
        (c.source, c.start, c.end, c.quote) for c in before.citations
    ]
    assert list((settings.index / kept.KEPT).iterdir())
    fake = FakeEmbedder()
    build(settings, embedder_factory=lambda name: fake)
    assert list((settings.index / kept.KEPT).iterdir())  # the retriever still answers from the earlier version
    retriever.refresh()  # it moves on and lets the earlier version go
    store.collect_garbage(settings.index)  # as the next build does first
    assert not list((settings.index / kept.KEPT).iterdir())  # no version lists the earlier bytes any more
    after = answer(question, Retriever(settings, embedder_factory=lambda name: fake), settings)
    for c in after.citations:
        assert (settings.corpus / c.source).read_text()[c.start : c.end] == c.quote

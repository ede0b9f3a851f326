"""The real path: the packaged model, a FAISS index on disk, verified quotes, the CLI's JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SEED

from rag.answer.quotes import NO_ANSWER, answer
from rag.search import Retriever

FACTS = [
    ("In how many countries will the terrorists now solve their problems?", "about 60 countries"),
    ("On what date did the Russian military operation in Syria begin?", "September 30, 2015"),
    ("Who is the deputy head of the Council of the Russian Diplomats Association?", "Andrey Baklanov"),
    ("How often should I descale the kettle?", "every four weeks"),
]
OFF_TOPIC = [
    "What is the tallest mountain in Africa?",
    "How do I bake sourdough bread at home?",
    "Who won the football world cup in 1998?",
]


pytestmark = pytest.mark.slow  # the packaged model, a real index on disk, the CLI in a subprocess


@pytest.fixture(scope="module")
def retriever(seed_settings):
    return Retriever(seed_settings)


SEED_EXAMPLES = [  # (question, words of the answering sentence, the answer to mark): the examples
    (
        "When did the Russian military operation in Syria start?",
        "Two main tasks were set before",
        "September 30, 2015",
    ),  # the file has a no-break space after "before"
    ("Which outlet did Baklanov give the interview to?", "told Vestnik Kavkaza", "Vestnik Kavkaza"),  # not the headline
    (
        "In how many countries will the terrorists now solve their problems?",
        "Now they will solve their problems",
        "about 60 countries",
    ),
    ("How often should I descale the kettle?", "Descale the kettle", "every four weeks"),
]


@pytest.mark.parametrize("question, sentence, marked", SEED_EXAMPLES)
def test_the_answering_sentence_comes_first_with_the_answer_marked(
    seed_settings, retriever, question, sentence, marked
):
    result = answer(question, retriever, seed_settings)
    assert not result.abstained, result.text
    first = result.citations[0]
    assert sentence in first.quote, first.quote
    assert first.answer and first.answer in marked or marked in first.answer, first.answer
    text = (Path(seed_settings.corpus) / first.source).read_text(encoding="utf-8")
    assert text[first.start : first.end] == first.quote  # the quote is the sentence, verified
    assert "\n" not in first.quote.strip() and len(first.quote) <= 600
    assert text[first.answer_start : first.answer_end] == first.answer


def test_a_headline_that_matches_gives_way_to_the_sentence_under_it(seed_settings, retriever):
    """The article's headline names Baklanov but not the outlet: the sentence under it is quoted, the headline shown as context."""
    first = answer("Which outlet did Baklanov give the interview to?", retriever, seed_settings).citations[0]
    assert first.context_before.startswith('Andrei Baklanov: "After defeat of ISIS terrorists')
    assert "\n\n" in first.context_before and first.quote.startswith("The deputy head of the Council")


FOLLOW_UPS = [  # (previous question, question, is a follow-up), decided with the real model
    ("How often should I descale the kettle?", "When does the backup run?", False),
    ("What were the two main tasks of Russia's military operation in Syria?", "When did it start?", True),
    ("Who is Andrey Baklanov?", "Which outlet did he give the interview to?", True),
    ("What is the tallest mountain in Africa?", "How often should I descale the kettle?", False),
    (
        "When did the Russian military operation in Syria start?",
        "When did Russia's military operation in Syria begin?",
        True,
    ),
    ("Who won the football world cup in 1998?", "How do I bake sourdough bread at home?", False),
]


def test_the_quote_is_the_sentence_that_holds_the_answer_not_only_the_one_that_matches(tmp_path, real_embedder):
    """ "She is also the oldest pilot…" matches the question; the sentence before it names her: that one is quoted."""
    from conftest import write_corpus

    from rag.build.indexer import build
    from rag.config import Settings

    write_corpus(
        tmp_path / "corpus",
        {
            "airline.md": "# Polar routes\n\nCaptain Ingrid Solberg became the first pilot to fly both polar routes for the "
            "airline. She is also the oldest pilot ever to fly the route, at age 63. The route opened in 1957.\n\n"
            "# Fleet\n\nThe airline flies eleven long-range jets from its base in Tromsø.\n",
        },
    )
    settings = Settings(corpus=tmp_path / "corpus", index=tmp_path / "index", model=real_embedder.name)
    build(settings)
    result = answer("Who is the oldest pilot to fly the route?", Retriever(settings), settings)
    first = result.citations[0]
    assert first.quote == "Captain Ingrid Solberg became the first pilot to fly both polar routes for the airline."
    assert first.answer == "Ingrid Solberg"
    assert first.context_after.startswith(" She is also the oldest pilot")
    text = (tmp_path / "corpus" / "airline.md").read_text(encoding="utf-8")
    assert text[first.start : first.end] == first.quote and text[first.answer_start : first.answer_end] == first.answer


@pytest.mark.parametrize("previous, question, follows", FOLLOW_UPS)
def test_follow_ups_are_decided_by_meaning_with_the_real_model(real_embedder, previous, question, follows):
    from rag.answer.follow_up import contextualize, is_follow_up

    assert is_follow_up(question, previous, real_embedder) is follows
    searched = contextualize(question, [previous], real_embedder)
    assert searched == (f"{previous} {question}" if follows else question)


def test_an_unrelated_short_question_is_answered_on_its_own(seed_settings, retriever):
    result = answer(
        "How often should I descale the kettle?",
        retriever,
        seed_settings,
        history=["When did the Russian military operation in Syria start?"],
    )
    assert result.searched_for == "How often should I descale the kettle?"
    assert result.citations[0].source == "guides/kettle.md"


@pytest.mark.parametrize("question,expected", FACTS)
def test_factual_question_gets_a_correct_verified_quote(seed_settings, retriever, question, expected):
    result = answer(question, retriever, seed_settings)
    assert not result.abstained, result.text
    assert any(expected in c.quote for c in result.citations), result.text
    for c in result.citations:
        text = (Path(seed_settings.corpus) / c.source).read_text(encoding="utf-8")
        assert text[c.start : c.end] == c.quote
        assert text[: c.start].count("\n") + 1 == c.line_start
        assert text[: c.end].count("\n") + 1 == c.line_end
        assert c.passage_id.startswith(c.source + "#")
        assert f"“{c.quote}” [{c.n}]" in result.text


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_question_the_corpus_cannot_answer_abstains(seed_settings, retriever, question):
    result = answer(question, retriever, seed_settings)
    assert result.abstained and result.citations == ()
    assert result.text.startswith(NO_ANSWER)
    assert "for reference only" in result.text and result.nearest


def test_quote_that_no_longer_stands_in_the_file_is_never_shown(seed_settings, retriever, tmp_path):
    moved = seed_settings.replace(corpus=tmp_path)  # same index, but the files are not there
    result = answer(FACTS[0][0], Retriever(moved), moved)
    assert result.abstained and result.citations == ()
    assert "rag build" in result.text


def run_cli(*args, settings=None):
    env = dict(os.environ)
    if settings is not None:
        env.update(RAG_CORPUS=str(settings.corpus), RAG_INDEX=str(settings.index))
    return subprocess.run([sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_ask_json_contract(seed_settings):
    done = run_cli("ask", "--json", FACTS[0][0], settings=seed_settings)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result) >= {"question", "answer", "abstained", "citations"}
    assert result["abstained"] is False and result["citations"]
    for c in result["citations"]:
        assert set(c) >= {
            "n",
            "source",
            "start",
            "end",
            "line_start",
            "line_end",
            "quote",
            "passage_id",
            "relevance",
            "context_before",
            "context_after",
            "answer_start",
            "answer_end",
        }
        text = (Path(seed_settings.corpus) / c["source"]).read_text(encoding="utf-8")
        assert text[c["start"] : c["end"]] == c["quote"]
        assert text[c["start"] - len(c["context_before"]) : c["end"] + len(c["context_after"])] == (
            c["context_before"] + c["quote"] + c["context_after"]
        )
        if c["answer_start"] is not None:
            assert c["start"] <= c["answer_start"] < c["answer_end"] <= c["end"]
        assert f"[{c['n']}]" in result["answer"]


def test_cli_build_status_and_skips_on_a_fresh_corpus(tmp_path, real_embedder):
    corpus, index = tmp_path / "docs", tmp_path / "idx"
    corpus.mkdir()
    (corpus / SEED.name).write_bytes(SEED.read_bytes())
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "bad.txt").write_bytes(b"\x81\x8d\x00\x90 not text")
    done = run_cli("build", "--corpus", str(corpus), "--index", str(index))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("full build; files: 1 added")
    assert "skipped empty.txt: empty file" in done.stderr and "skipped bad.txt: binary" in done.stderr
    status = json.loads(run_cli("status", "--json", "--corpus", str(corpus), "--index", str(index)).stdout)
    assert (status["state"], status["files"], status["skipped"]) == ("up to date", 1, 2)
    again = json.loads(run_cli("build", "--json", "--corpus", str(corpus), "--index", str(index)).stdout)
    assert (again["files_unchanged"], again["passages_embedded"]) == (1, 0)


def test_cli_errors_are_clean_messages(tmp_path):
    done = run_cli("ask", "anything", "--corpus", str(tmp_path), "--index", str(tmp_path / "none"))
    assert done.returncode == 2
    assert done.stderr.startswith("rag: error: no index in") and "rag build" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("build", "--corpus", str(tmp_path / "missing"), "--index", str(tmp_path / "i"))
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_asking_with_another_model_than_the_index_names_both(seed_settings):
    done = run_cli("ask", "anything", "--model", "some-other-model", settings=seed_settings)
    assert done.returncode == 2
    assert "all-MiniLM-L6-v2" in done.stderr and "some-other-model" in done.stderr and "rag build" in done.stderr


def test_a_word_heading_that_matches_gives_way_to_the_paragraph_it_heads(tmp_path, real_embedder):
    """A Word document's heading is a paragraph of its own in the text of record: the answer comes from under it."""
    import writers

    from rag.build.indexer import build
    from rag.config import Settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    writers.word_document(
        corpus / "runbook.docx",
        [
            ("h1", "Nightly backup of the archive server"),
            (
                "p",
                "The archive server holds the scanned contracts. Its copy is made every night at 02:00 by the cron job.",
            ),
            ("h1", "Printers"),
            ("p", "The third-floor printer takes A3 paper."),
        ],
    )
    settings = Settings(corpus=corpus, index=tmp_path / "index", model=real_embedder.name)
    build(settings)
    result = answer("When is the nightly backup of the archive server made?", Retriever(settings), settings)
    first = result.citations[0]
    assert first.quote == "Its copy is made every night at 02:00 by the cron job.", first.quote
    assert first.context_before.startswith("Nightly backup of the archive server")
    assert "02:00" in first.answer


def meeting_transcript() -> str:
    """About 25 KB of short lowercase caption lines without sentence punctuation, as meeting captions come."""
    chatter = [
        "ok so lets get started",
        "can everyone hear me",
        "yes we can hear you fine",
        "first item is the budget review for the parks department",
        "we spent a little more on mowing than planned",
        "the library roof repair is finished",
        "next week we look at the school bus routes",
        "any questions on that",
        "no questions from me",
        "moving on then",
    ]
    lines = [f"{chatter[n % len(chatter)]} {n // len(chatter)}" for n in range(760)]
    lines.insert(700, "the new bridge over the river will cost about forty two million dollars")
    return "\n".join(lines) + "\n"


def test_a_transcript_of_unpunctuated_lines_answers_with_the_line_not_the_file(tmp_path, real_embedder):
    from rag.build.indexer import build
    from rag.config import Settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = meeting_transcript()
    (corpus / "meeting.txt").write_text(text, encoding="utf-8")
    assert len(text) > 25_000
    settings = Settings(corpus=corpus, index=tmp_path / "index")
    summary = build(settings, embedder_factory=lambda name: real_embedder)
    assert summary.passages > 15  # not one passage of the whole file
    result = answer("How much will the new bridge cost?", Retriever(settings), settings)
    assert not result.abstained, result.text
    first = result.citations[0]
    assert "forty two million dollars" in first.quote
    assert len(first.quote) <= 200  # the line, not the file: it fits on a screen
    assert text[first.start : first.end] == first.quote
    assert first.line_start == first.line_end == 701

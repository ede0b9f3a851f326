"""`rag chat`: questions, follow-ups, citations under each answer, /show, /save, /new, and the real command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from conftest import write_corpus
from fakes import FakeEmbedder

from rag.build.indexer import build
from rag.search import Retriever
from rag.serve.terminal import chat

DOCUMENTS = {
    "dams.txt": "The Hoover Dam was finished in 1936. It holds back Lake Mead on the Colorado River.",
    "kettle.md": "# Kettle\n\nDescale the kettle every four weeks with white vinegar.",
}


@pytest.fixture
def small(make_settings):
    fake = FakeEmbedder()
    settings = make_settings(min_score=0.0)
    write_corpus(settings.corpus, DOCUMENTS)
    build(settings, embedder_factory=lambda name: fake)
    return settings, Retriever(settings, embedder_factory=lambda name: fake)


def talk(small, *lines: str) -> str:
    settings, retriever = small
    typed = iter(lines)

    def read(prompt: str) -> str:
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    out = io.StringIO()
    assert chat(settings, read=read, out=out, retriever=retriever) == 0
    return out.getvalue()


def test_an_answer_is_printed_with_its_citations(small):
    shown = talk(small, "When was the Hoover Dam finished?")
    assert shown.startswith("rag chat: 2 files, 2 passages in ")
    assert "“The Hoover Dam was finished in 1936." in shown
    assert "[1] dams.txt, line 1 (chars 0–" in shown


def test_show_marks_the_quote_inside_its_passage(small):
    shown = talk(small, "When was the Hoover Dam finished?", "/show 1")
    assert "[1] dams.txt, line 1, passage dams.txt#1\n»The Hoover Dam was finished in 1936." in shown


@pytest.mark.parametrize(
    "lines, reply",
    [
        (["/show 1"], "no citations yet: ask a question first"),
        (["When was the Hoover Dam finished?", "/show 9"], "no citation [9] in the last answer"),
        (["/show one"], "say which citation: /show 1"),
        (["/save"], "say where: /save conversation.md"),
        (["/frobnicate"], "unknown command /frobnicate; /help lists the commands"),
        (["/help"], "/show N"),
        (["/new"], "new conversation"),
    ],
)
def test_commands_answer_in_words(small, lines, reply):
    assert reply in talk(small, *lines)


def test_quit_stops_before_later_lines(small):
    shown = talk(small, "/quit", "When was the Hoover Dam finished?")
    assert "1936" not in shown


def test_save_writes_markdown_and_json_whose_quotes_stand_in_the_files(small, tmp_path):
    settings, _ = small
    shown = talk(
        small,
        "When was the Hoover Dam finished?",
        "How often should the kettle be descaled?",
        f"/save {tmp_path / 'talk.md'}",
        f"/save {tmp_path / 'talk.json'}",
    )
    assert "saved 2 answers to" in shown
    answers = json.loads((tmp_path / "talk.json").read_text())
    markdown = (tmp_path / "talk.md").read_text()
    citations = [c for a in answers for c in a["citations"]]
    assert len(answers) == 2 and citations
    for c in citations:
        assert (settings.corpus / c["source"]).read_text()[c["start"] : c["end"]] == c["quote"]
        assert c["quote"].splitlines()[0] in markdown.replace("**", "")  # the quote, the answer marked in bold


def test_a_follow_up_is_searched_with_the_question_before_it_until_new(small):
    shown = talk(small, "When was the Hoover Dam finished?", "and where is it?")
    assert "(searched for: When was the Hoover Dam finished? and where is it?)" in shown
    shown = talk(small, "When was the Hoover Dam finished?", "/new", "and where is it?")
    assert "(searched for: When was the Hoover Dam finished? and where is it?)" not in shown


def test_save_to_an_unwritable_place_says_so(small, tmp_path):
    shown = talk(small, "When was the Hoover Dam finished?", f"/save {tmp_path / 'missing' / 'x.md'}")
    assert "could not save to" in shown and "give another file name" in shown


@pytest.mark.slow
def test_the_real_command_loads_once_and_answers_each_question(seed_settings, tmp_path):
    env = dict(os.environ, RAG_CORPUS=str(seed_settings.corpus), RAG_INDEX=str(seed_settings.index), HOME=str(tmp_path))
    typed = "In how many countries will the terrorists now solve their problems?\n/show 1\nHow often should I descale the kettle?\n/quit\n"
    done = subprocess.run(
        [sys.executable, "-m", "rag", "chat"], input=typed, capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "about 60 countries" in done.stdout and "every four weeks" in done.stdout
    assert "»" in done.stdout and "«" in done.stdout  # /show marked the quote (no terminal: plain marks)
    assert done.stdout.count("rag chat:") == 1

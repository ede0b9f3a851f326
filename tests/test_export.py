"""rag.serve.export: the terminal lines, Markdown and JSON made from `rag ask --json` objects."""

from __future__ import annotations

import json

import pytest

from rag.serve.export import as_json, as_markdown, as_text, plural, where


def citation(n=1, **changes) -> dict:
    base = {
        "n": n,
        "source": "notes/report.txt",
        "start": 10,
        "end": 42,
        "line_start": 3,
        "line_end": 3,
        "quote": "The dam was finished in 1936.",
        "passage_id": "notes/report.txt#2",
        "score": 0.8,
    }
    return {**base, **changes}


def answer(question="When was the dam finished?", citations=(citation(),), abstained=False, text=None) -> dict:  # noqa: B008
    quotes = "\n\n".join(f"“{c['quote']}” [{c['n']}]" for c in citations)
    return {"question": question, "answer": text or quotes, "abstained": abstained, "citations": list(citations)}


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, "notes/report.txt, line 3"),
        ({"line_end": 5}, "notes/report.txt, lines 3–5"),
        (
            {"page": 4, "page_label": "4"},
            "notes/report.txt, p. 4",
        ),  # lines of a text of record mean nothing to a reader
        ({"page": 4, "page_label": "iv"}, "notes/report.txt, p. 4 (printed iv)"),
        ({"page": 4, "pages": [4, 5]}, "notes/report.txt, pp. 4–5"),
        ({"section": "2 Methods › 2.1 Data"}, "notes/report.txt, 2 Methods › 2.1 Data"),
    ],
)
def test_where_a_quote_stands(changes, expected):
    assert where(citation(**changes)) == expected


@pytest.mark.parametrize("count, expected", [(0, "0 files"), (1, "1 file"), (2, "2 files"), (1234, "1,234 files")])
def test_plural(count, expected):
    assert plural(count, "file", "files") == expected


def test_text_is_the_answer_then_one_line_per_citation():
    assert as_text(answer()) == (
        "“The dam was finished in 1936.” [1]\n\n[1] notes/report.txt, line 3 (chars 10–42, passage notes/report.txt#2)"
    )
    declined = answer(citations=(), abstained=True, text="The corpus does not seem to answer this question.")
    assert as_text(declined) == declined["answer"]


def test_markdown_quotes_verbatim_and_cites_each_place():
    tricky = citation(2, quote="A *starred* line\nand a [bracket] <b>", start=50, end=86, line_end=4)
    text = as_markdown(
        [
            answer(citations=(citation(answer_start=34, answer_end=38), tricky)),
            answer("Why?", (), True, "The corpus does not seem to answer this question."),
        ]
    )
    assert text.startswith("# Conversation with rag\n\n## When was the dam finished?\n")
    assert "> The dam was finished in **1936**. [^1]" in text  # the answer in bold
    assert "> A *starred* line\n> and a [bracket] <b> [^2]" in text  # the quote itself is never rewritten
    assert "[^1]: notes/report.txt, line 3, characters 10–42 (passage `notes/report.txt#2`)" in text
    assert "[^2]: notes/report.txt, lines 3–4, characters 50–86" in text
    assert "## Why?\n\n> The corpus does not seem to answer this question." in text


def test_markdown_headings_cannot_be_broken_by_a_question():
    assert "## \\# not \\*bold\\* \\[x\\] two lines\n" in as_markdown([answer("# not *bold* [x]\ntwo   lines", ())])


def test_json_is_the_list_of_answer_objects():
    answers = [answer(), answer("Why?", (), True, "no")]
    assert json.loads(as_json(answers)) == answers

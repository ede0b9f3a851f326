"""Answers as text a person takes away: the terminal's lines, a Markdown record, a JSON record.

Every function reads the `rag ask --json` object (`Answer.to_dict()`), so an answer from a running
server and one computed here print the same, and an export holds the very quotes that were verified.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from rag.types import page_phrase

FORMATS = ("text", "json", "markdown")


def where(citation: dict) -> str:
    """Where a quote stands, in words: file, page or section when known, and lines."""
    parts = [f"{citation['collection']}: {citation['source']}" if citation.get("collection") else citation["source"]]
    pages = citation.get("pages") or ([citation["page"]] if citation.get("page") else [])
    if pages:
        parts.append(page_phrase(pages, citation.get("page_label")))
    if citation.get("section"):
        parts.append(citation["section"])
    if citation.get("line_start") and not pages and not citation.get("section"):  # lines of a plain-text file
        first, last = citation["line_start"], citation["line_end"]
        parts.append(f"line {first}" if first == last else f"lines {first}–{last}")
    return ", ".join(parts)


def as_text(answer: dict) -> str:
    """What `rag ask` prints: the quotes with their markers, then one line per citation."""
    lines = [answer["answer"]]
    if answer.get("citations"):
        lines.append("")
        lines += [
            f"[{c['n']}] {where(c)} (chars {c['start']}–{c['end']}, passage {c['passage_id']})"
            for c in answer["citations"]
        ]
    return "\n".join(lines)


def as_markdown(answers: Sequence[dict], title: str = "Conversation with rag") -> str:
    """A conversation as Markdown: each question as a heading, then its answer as `answer_markdown` writes it."""
    out = [f"# {title}", ""]
    for answer in answers:
        out += [f"## {_inline(answer['question'])}", "", answer_markdown(answer)]
    return "\n".join(out).rstrip() + "\n"


def answer_markdown(answer: dict) -> str:
    """One answer as Markdown (`rag ask --format markdown`, the OpenAI-compatible door): each quote a block quote,
    verbatim but for the marked answer in bold, and a numbered footnote naming the file, its page, section or
    lines, and the character span."""
    if not answer.get("citations"):
        return (_blockquote(answer["answer"]) if answer.get("abstained") else answer["answer"]) + "\n"
    quotes = [_blockquote(_quote_markdown(c)) + f" [^{c['n']}]" for c in answer["citations"]]
    notes = [
        f"[^{c['n']}]: {_inline(where(c))}, characters {c['start']}–{c['end']} (passage `{c['passage_id']}`)"
        for c in answer["citations"]
    ]
    return "\n\n".join(quotes) + "\n\n" + "\n".join(notes) + "\n"


def _quote_markdown(citation: dict) -> str:
    """The quote with its marked answer in bold, every other character as it stands (a quote is never rewritten:
    take out the bold markers and it is the cited text)."""
    quote, start = citation["quote"], citation["start"]
    a, b = citation.get("answer_start"), citation.get("answer_end")
    if a is None or b is None or not start <= a < b <= citation["end"]:
        return quote
    return quote[: a - start] + "**" + quote[a - start : b - start] + "**" + quote[b - start :]


def _escaped(text: str) -> str:
    return "".join("\\" + ch if ch in "\\`*_[]<>#|" else ch for ch in str(text))


def as_json(answers: Sequence[dict]) -> str:
    """A conversation as JSON: a list of `rag ask --json` objects, in the order they were asked."""
    return json.dumps(list(answers), ensure_ascii=False, indent=1)


def _blockquote(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines() or [""])


def _inline(text: str) -> str:
    """One line of Markdown text: line breaks folded, characters that would start markup escaped."""
    return _escaped(" ".join(str(text).split()))


def plural(count: int, one: str, many: str) -> str:
    """`1 file`, `2 files`: a count with the right form of its noun."""
    return f"{count:,} {one if count == 1 else many}"

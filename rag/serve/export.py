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
    """A conversation as Markdown: each question, its quotes as block quotes, each citation's place."""
    out = [f"# {title}", ""]
    for answer in answers:
        out += [f"## {_inline(answer['question'])}", ""]
        if not answer.get("citations"):
            out += [_blockquote(answer["answer"]) if answer.get("abstained") else answer["answer"], ""]
            continue
        for c in answer["citations"]:
            out += [_blockquote(c["quote"]) + f" [{c['n']}]", ""]
        out += [
            f"- **[{c['n']}]** {_inline(where(c))}, characters {c['start']}–{c['end']} (passage `{c['passage_id']}`)"
            for c in answer["citations"]
        ]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def as_json(answers: Sequence[dict]) -> str:
    """A conversation as JSON: a list of `rag ask --json` objects, in the order they were asked."""
    return json.dumps(list(answers), ensure_ascii=False, indent=1)


def _blockquote(text: str) -> str:
    return "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines() or [""])


def _inline(text: str) -> str:
    """One line of Markdown text: line breaks folded, characters that would start markup escaped."""
    folded = " ".join(str(text).split())
    return "".join("\\" + ch if ch in "\\`*_[]<>#|" else ch for ch in folded)


def plural(count: int, one: str, many: str) -> str:
    """`1 file`, `2 files`: a count with the right form of its noun."""
    return f"{count:,} {one if count == 1 else many}"

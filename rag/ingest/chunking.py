"""Sentences and passages as character spans of the decoded text. Pure functions, no model."""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence

Span = tuple[int, int]
TokenCounter = Callable[[Sequence[str]], list[int]]

# Words that end with a period without ending a sentence.
ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt ft vs etc al inc ltd co corp dept univ est approx
    ed eds rev gen col lt sgt capt cmdr adm gov sen rep pres hon messrs mme
    jan feb mar apr jun jul aug sep sept oct nov dec e.g i.e cf viz ca resp
    """.split()
)
# Abbreviations only when a number follows ("No. 5", "Fig. 3"); "He said no. She left." ends.
NUMBERED_ABBREVIATIONS = frozenset("no nos vol vols pp fig figs eq".split())

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_TERMINATOR = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)")
_LINE_START = re.compile(r"\n(?=[ \t]*(?:[-*+•]\s|#{1,6}\s|\d{1,3}[.)]\s|>\s|\|))")
_HEADING_LINE = re.compile(r"^[ \t]*#{1,6}\s[^\n]*\n", re.MULTILINE)


def _trim(text: str, start: int, end: int) -> Span | None:
    """Shrink a span to exclude surrounding whitespace; None if nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def split_paragraphs(text: str) -> list[Span]:
    """Spans of paragraphs: text separated by one or more blank lines."""
    spans, pos = [], 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        spans.append(_trim(text, pos, match.start()))
        pos = match.end()
    spans.append(_trim(text, pos, len(text)))
    return [s for s in spans if s]


def _is_abbreviation(text: str, start: int, dot: int, following: str = "") -> bool:
    """True when the word ending at the period `dot` is an abbreviation or an initial."""
    word_start = dot
    while word_start > start and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:dot].lstrip("(\"'“‘[").lower()
    if not word:
        return False
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. Smith"
    if word in ABBREVIATIONS:
        return True
    if word in NUMBERED_ABBREVIATIONS:
        return following[:1].isdigit()
    return bool(re.fullmatch(r"(?:[a-z]\.)+[a-z]", word))  # "u.s", "e.g"


def _line_blocks(text: str, start: int, end: int) -> list[Span]:
    """Split a paragraph where a new line starts a list item, a heading or a table row."""
    cuts = [start]
    for match in _LINE_START.finditer(text, start, end):
        cuts.append(match.start())
    for match in _HEADING_LINE.finditer(text[start:end]):  # slice so `^` matches at `start`
        cuts.append(start + match.end() - 1)
    cuts = sorted(set(cuts)) + [end]
    return [s for a, b in zip(cuts, cuts[1:]) if (s := _trim(text, a, b))]


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans inside `text[start:end]`, never crossing a paragraph or list item."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    for para_start, para_end in split_paragraphs(text[start:end]):
        for block_start, block_end in _line_blocks(text, start + para_start, start + para_end):
            spans.extend(_sentences_in_block(text, block_start, block_end))
    return spans


def _sentences_in_block(text: str, start: int, end: int) -> list[Span]:
    """Sentence spans of one block (a paragraph or list item) by its punctuation."""
    spans, pos = [], start
    for match in _TERMINATOR.finditer(text, start, end):
        cut = match.end()
        following = text[cut:end].lstrip()
        if not following:
            continue
        nxt = following[0]
        if nxt.islower() or nxt in ",;:)":
            continue
        single_period = text[match.start()] == "." and match.end() - match.start() == 1
        if single_period and _is_abbreviation(text, pos, match.start(), following):
            continue
        span = _trim(text, pos, cut)
        if span:
            spans.append(span)
        pos = cut
    span = _trim(text, pos, end)
    if span:
        spans.append(span)
    return spans


def pack_passages(
    text: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap: int = 1,
) -> list[Span]:
    """Pack whole sentences into passages of at most `max_tokens` model tokens.

    A passage prefers to end at a paragraph break once it is half full, carries the last
    `overlap` sentences into the next passage, and never cuts a sentence: a single sentence
    longer than the budget becomes a passage of its own.
    """
    paragraphs = [split_sentences(text, a, b) for a, b in split_paragraphs(text)]
    sentences = [s for para in paragraphs for s in para]
    if not sentences:
        return []
    tokens = dict(zip(sentences, count_tokens([text[a:b] for a, b in sentences])))
    passages: list[list[Span]] = []
    current: list[Span] = []
    fresh = False  # does `current` hold a sentence no emitted passage has?

    def emit() -> list[Span]:
        nonlocal fresh
        if current and fresh:
            passages.append(list(current))
        fresh = False
        if overlap <= 0 or len(current) <= overlap:
            return []
        return current[-overlap:]

    for para in paragraphs:
        para_tokens = sum(tokens[s] for s in para)
        used = sum(tokens[s] for s in current)
        if current and used + para_tokens > max_tokens and used >= max_tokens // 2:
            current = emit()
        for sentence in para:
            used = sum(tokens[s] for s in current)
            if current and used + tokens[sentence] > max_tokens:
                current = emit()
                while current and sum(tokens[s] for s in current) + tokens[sentence] > max_tokens:
                    current.pop(0)
            current.append(sentence)
            fresh = True
    emit()
    return [(p[0][0], p[-1][1]) for p in passages]


class LineIndex:
    """Maps character offsets to 1-based line numbers."""

    def __init__(self, text: str):
        self._newlines = [match.start() for match in re.finditer("\n", text)]

    def line(self, offset: int) -> int:
        """The line that holds the character at `offset`."""
        return bisect.bisect_left(self._newlines, offset) + 1

    def lines(self, start: int, end: int) -> tuple[int, int]:
        """First and last line of the span `[start, end)`."""
        return self.line(start), self.line(max(start, end - 1))

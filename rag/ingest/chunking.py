"""Sentences and passages as character spans of the decoded text. Pure functions, no model.

Every unit a passage is packed from (a sentence; a line, where a paragraph is made of lines without sentence
punctuation, as captions, chat exports, logs and lists are; a piece of a run too long for either) holds at most
MAX_UNIT_CHARS characters and at most the passage budget in model tokens, and every passage at most
MAX_PASSAGE_CHARS: no quote, which is a unit, can be longer than a screen, and every token of a passage is
embedded. Each step reads its input once: the cost is linear in the text's length, whatever its shape.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Sequence

from rag.types import Document, Passage

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
_NON_SPACE = re.compile(r"\S")
_ENDS_SENTENCE = re.compile(r"[.!?…][\"'”’»)\]]*$")
_CLAUSE_END = re.compile(r"[;:,](?=\s)")
_SPACE = re.compile(r"\s")

MAX_UNIT_CHARS = 600
"""Longest sentence, line or piece a passage is packed from, and so the longest quote: a screen of text. A longer
run is cut at the best boundary it has: a line break, then clause punctuation, then white space, then anywhere."""
MAX_PASSAGE_CHARS = 4000
"""Longest passage in characters, whatever its tokens (a run of unknown-word tokens is few tokens and many characters)."""
LINES_SHARE = 0.2
"""A paragraph of three lines or more in which at most this share of the lines holds sentence punctuation is read
line by line: each line is a unit (captions, transcripts, chat exports, logs, lists, tables saved as text)."""
ABBREVIATION_REACH = 40
"""Characters looked back from a period for the word it ends (no abbreviation or initial is longer)."""


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
    word_start, floor = dot, max(start, dot - ABBREVIATION_REACH)
    while word_start > floor and not text[word_start - 1].isspace():
        word_start -= 1
    if word_start == floor > start:
        return False  # a "word" this long is no abbreviation
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
    """Unit spans inside `text[start:end]`: sentences, or lines where a paragraph is made of lines, none longer
    than MAX_UNIT_CHARS, never crossing a paragraph or list item."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    for para_start, para_end in split_paragraphs(text[start:end]):
        for block_start, block_end in _line_blocks(text, start + para_start, start + para_end):
            units = _lines(text, block_start, block_end) or _sentences_in_block(text, block_start, block_end)
            for a, b in units:
                spans.extend(_pieces(text, a, b, MAX_UNIT_CHARS) if b - a > MAX_UNIT_CHARS else [(a, b)])
    return spans


def _lines(text: str, start: int, end: int) -> list[Span]:
    """The lines of a block that is made of lines (see LINES_SHARE), or [] for a block of prose."""
    allowed = LINES_SHARE * (text.count("\n", start, end) + 1)  # counted in C; prose stops looking early
    lines, punctuated, pos = [], 0, start
    while pos < end:
        stop = text.find("\n", pos, end)
        stop = end if stop < 0 else stop
        if span := _trim(text, pos, stop):
            lines.append(span)
            punctuated += bool(_TERMINATOR.search(text, *span) or _ENDS_SENTENCE.search(text, *span))
            if punctuated > allowed:
                return []
        pos = stop + 1
    if len(lines) < 3 or punctuated > LINES_SHARE * len(lines):
        return []
    return lines


def _sentences_in_block(text: str, start: int, end: int) -> list[Span]:
    """Sentence spans of one block (a paragraph or list item) by its punctuation."""
    spans, pos = [], start
    for match in _TERMINATOR.finditer(text, start, end):
        cut = match.end()
        following = _NON_SPACE.search(text, cut, end)
        if following is None:
            continue
        nxt = following.group()
        if nxt.islower() or nxt in ",;:)":
            continue
        single_period = text[match.start()] == "." and match.end() - match.start() == 1
        if single_period and _is_abbreviation(
            text, pos, match.start(), text[following.start() : following.start() + 1]
        ):
            continue
        span = _trim(text, pos, cut)
        if span:
            spans.append(span)
        pos = cut
    span = _trim(text, pos, end)
    if span:
        spans.append(span)
    return spans


def _pieces(text: str, start: int, end: int, limit: int) -> list[Span]:
    """`text[start:end]` cut into pieces of at most `limit` characters, each at the best boundary in the second
    half of its window: after a line break, else after clause punctuation, else at white space, else anywhere
    but inside a character's combining marks."""
    pieces = []
    while end - start > limit:
        low, high = start + max(1, limit // 2), start + limit
        cut = text.rfind("\n", low, high) + 1
        if not cut:
            cut = _last_match_end(_CLAUSE_END, text, low, high)
        if not cut:
            cut = _last_match_end(_SPACE, text, low, high)
        if not cut:
            cut = high
            while cut > low and unicodedata.combining(text[cut]):
                cut -= 1
        if piece := _trim(text, start, cut):
            pieces.append(piece)
        following = _NON_SPACE.search(text, cut, end)
        start = following.start() if following else end
    if piece := _trim(text, start, end):
        pieces.append(piece)
    return pieces


def _last_match_end(pattern: re.Pattern, text: str, low: int, high: int) -> int:
    """Where the last match of `pattern` inside `text[low:high]` ends, or 0 when there is none."""
    found = 0
    for match in pattern.finditer(text, low, high):
        found = match.end()
    return found


def passage_units(text: str, count_tokens: TokenCounter, max_tokens: int) -> list[list[tuple[Span, int]]]:
    """Per paragraph, the units passages are packed from with their model tokens: sentences and lines, each cut
    further (at its best boundaries) while it holds more than `max_tokens` tokens."""
    paragraphs = [split_sentences(text, a, b) for a, b in split_paragraphs(text)]
    counted = _counted([s for para in paragraphs for s in para], text, count_tokens)
    found, at = [], 0
    for para in paragraphs:
        units = []
        for span, tokens in counted[at : at + len(para)]:
            units.extend(_fit(text, span, tokens, count_tokens, max_tokens))
        found.append(units)
        at += len(para)
    return found


def _counted(spans: list[Span], text: str, count_tokens: TokenCounter) -> list[tuple[Span, int]]:
    return list(zip(spans, count_tokens([text[a:b] for a, b in spans]))) if spans else []


def _fit(text: str, span: Span, tokens: int, count_tokens: TokenCounter, max_tokens: int) -> list[tuple[Span, int]]:
    """One unit as pieces of at most `max_tokens` tokens (itself when it fits)."""
    fitted, waiting = [], [(span, tokens)]
    while waiting:
        (a, b), count = waiting.pop()
        if count <= max_tokens or max_tokens < 1 or b - a < 2:
            fitted.append(((a, b), count))
            continue
        limit = max(1, (b - a) * max_tokens // count)
        waiting.extend(reversed(_counted(_pieces(text, a, b, limit), text, count_tokens)))
    return fitted


def pack_passages(
    text: str,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap: int = 1,
    max_chars: int = MAX_PASSAGE_CHARS,
) -> list[Span]:
    """Pack whole units into passages of at most `max_tokens` model tokens and `max_chars` characters.

    A passage prefers to end at a paragraph break once it is half full and carries its last `overlap`
    units into the next passage. A unit over the budget was cut at its best boundaries first
    (`passage_units`), so every token of every passage is embedded.
    """
    passages: list[Span] = []
    current: deque[tuple[Span, int]] = deque()
    used, fresh = 0, False  # tokens in `current`; does it hold a unit no emitted passage has?

    def emit() -> None:
        nonlocal used, fresh
        if current and fresh:
            passages.append((current[0][0][0], current[-1][0][1]))
        fresh = False
        keep = overlap if 0 < overlap < len(current) else 0
        while len(current) > keep:
            used -= current.popleft()[1]

    def over(span: Span, tokens: int) -> bool:
        return used + tokens > max_tokens or span[1] - current[0][0][0] > max_chars

    for para in passage_units(text, count_tokens, max_tokens):
        para_tokens = sum(tokens for _, tokens in para)
        if current and used + para_tokens > max_tokens and used >= max_tokens // 2:
            emit()
        for span, tokens in para:
            if current and over(span, tokens):
                emit()
                while current and over(span, tokens):
                    used -= current.popleft()[1]
            current.append((span, tokens))
            used += tokens
            fresh = True
    emit()
    return passages


def passages_of(document: Document, count_tokens: TokenCounter, budget: int, overlap: int) -> list[Passage]:
    """The passages of one document, with ids `source#n`, spans and line numbers (`pack_passages`)."""
    spans = pack_passages(document.text, count_tokens, budget, overlap)
    lines = LineIndex(document.text)
    return [
        Passage(f"{document.source}#{n}", document.source, a, b, *lines.lines(a, b), document.text[a:b])
        for n, (a, b) in enumerate(spans, start=1)
    ]


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

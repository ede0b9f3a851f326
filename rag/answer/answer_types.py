"""What a question asks for, and where inside a sentence the answer to it stands (pure functions).

`expected_answer_type` reads the question ("when" → a date, "how many" → a number, "who/which"
→ a name, "where" → a place); `answer_span` marks the part of a quoted sentence that answers it:
the date, number, name or place asked for, else the phrase beside the question's own words that
fills its missing slot. A span is always a slice of the sentence, never new text.
"""

from __future__ import annotations

import re

from rag.index.bm25 import STOPWORDS, terms

_MONTHS = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December|"
    r"Jan\.|Feb\.|Mar\.|Apr\.|Aug\.|Sept?\.|Oct\.|Nov\.|Dec\.)"
)
_DAYS = r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_YEAR = r"(?:1[0-9]\d\d|20\d\d)"
_ORD = r"\d{1,2}(?:st|nd|rd|th)?"
DATE = re.compile(
    "|".join(
        [
            rf"\b{_MONTHS}\s+{_ORD},?\s+{_YEAR}\b",  # September 30, 2015
            rf"\b{_ORD}\s+(?:of\s+)?{_MONTHS}(?:,?\s+{_YEAR})?\b",  # 30 September 2015
            rf"\b{_MONTHS}\s+(?:of\s+)?{_YEAR}\b",  # September 2015
            rf"\b{_MONTHS}\s+{_ORD}\b",  # September 30
            rf"\b{_YEAR}\s*(?:–|-|to|and)\s*(?:{_YEAR}|\d\d)\b",  # 2013-2014
            rf"\b(?:early|late|mid)[- ]{_YEAR}s?\b",
            r"\b(?:\d{1,2}(?:st|nd|rd|th)|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|"
            r"eleventh|twelfth|thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|"
            r"twentieth|twenty-first)[- ]century\b",
            r"\b(?:AD|BC|BCE|CE)\s+\d{1,4}\b|\b\d{1,4}\s+(?:AD|BC|BCE|CE)\b",
            rf"\b{_YEAR}s?\b",
            rf"\b{_MONTHS}\b",
            rf"\b{_DAYS}\b",
        ]
    ),
    re.IGNORECASE,
)
"""A date, a year, a span of years, a century, a month or a weekday."""
_NUMBER_WORD = (
    r"(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
    r"seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand|"
    r"million|billion|trillion|dozen|half|a few|several)"
)
NUMBER = re.compile(
    r"(?:\b(?:about|around|approximately|nearly|almost|over|under|roughly|some|at least|more than|less than|"
    r"fewer than|up to)\s+)?"
    rf"(?:[$£€¥]\s?\d[\d,]*(?:\.\d+)?|\b\d[\d,]*(?:\.\d+)?|\b{_NUMBER_WORD}(?:[\s-]+(?:and\s+)?{_NUMBER_WORD})*\b)"
    r"(?:\s?(?:%|percent\b|per cent\b|million\b|billion\b|thousand\b|hundred\b|trillion\b))?"
    r"(?:[ -](?!(?:and|or|of|the|in|to|for|from|by|with|at|on|is|was|were|are)\b)[a-z][a-z-]{1,18}\b)?",
    re.IGNORECASE,
)
"""A quantity: digits, money, percentages or number words, with its unit word when one follows."""
_CONNECTOR = r"(?:of|the|de|da|del|der|di|du|la|le|van|von|bin|al|and|&|for|on)"
_CAPITAL = r"[A-Z][\w'’.-]*"
NAME = re.compile(rf"\b{_CAPITAL}(?:\s+(?:{_CONNECTOR}\s+)*{_CAPITAL})*")
"""A run of capitalised words (connectors such as "of the" allowed inside): a name, title or place."""
_ASKS_DATE = re.compile(
    r"^\s*(?:when\b|since when|in what year|in which year|on what date)"
    r"|\b(?:what|which) (?:date|year|day|month|time period|century|decade)\b",
    re.IGNORECASE,
)
_ASKS_NUMBER = re.compile(
    r"\bhow (?:many|much|long|old|far|often|large|big|tall|high|deep|wide|heavy|fast)\b"
    r"|\bwhat (?:number|percentage|percent|proportion|amount|share|fraction)\b",
    re.IGNORECASE,
)
_ASKS_NAME = re.compile(
    r"\b(?:who|whom|whose)\b|^\s*(?:\w+\s+)?which\b|\bname\b"
    r"|\b(?:what|which) (?:company|organi[sz]ation|group|team|band|party|newspaper|outlet|magazine|university|"
    r"school|church|family|king|queen|president|person|artist|author|brand|agency|network|channel|station)\b",
    re.IGNORECASE,
)
_ASKS_PLACE = re.compile(
    r"\bwhere\b|\b(?:what|which) (?:country|city|town|state|region|place|continent|island|river|area)\b", re.IGNORECASE
)
_CAUSE = re.compile(
    r"\b(?:because|due to|owing to|since|so that|in order to|as a result of|thanks to)\b", re.IGNORECASE
)
_WORD = re.compile(r"[\w'’-]+")
_BREAK = re.compile(r"[,;:()\[\]\"“”—–]|\s-\s")

TYPES = ("date", "number", "name", "place")
"""Kinds of answer a question can ask for, besides none in particular."""
PATTERNS = {"date": DATE, "number": NUMBER, "name": NAME, "place": NAME}


def expected_answer_type(question: str) -> str | None:
    """What the answer must be: "date" for "when…", "number" for "how many…", "name" for "who/which…",
    "place" for "where…"; None when the question asks for none of these."""
    if _ASKS_DATE.search(question):
        return "date"
    if _ASKS_NUMBER.search(question):
        return "number"
    if _ASKS_PLACE.search(question):
        return "place"
    if _ASKS_NAME.search(question):
        return "name"
    return None


def typed_matches(kind: str | None, sentence: str, question: str = "") -> list[tuple[int, int]]:
    """Spans of `sentence` holding an answer of `kind` that are not just the question's own words."""
    if kind is None:
        return []
    asked = set(terms(question))
    spans = []
    for match in PATTERNS[kind].finditer(sentence):
        a, b = _trim_name(sentence, match.start(), match.end()) if kind in ("name", "place") else match.span()
        words = set(terms(sentence[a:b]))
        if b <= a or (words and words <= asked) or (kind in ("name", "place") and not words):
            continue
        if kind == "number" and _is_bare_year_for_number(sentence[a:b]):
            continue
        spans.append((a, b))
    return spans


def holds_answer_type(kind: str | None, sentence: str, question: str = "") -> bool:
    """True when `sentence` holds an answer of the asked kind (a date for "when", …)."""
    return bool(typed_matches(kind, sentence, question))


def typed_distance(kind: str | None, sentence: str, question: str = "") -> int | None:
    """Words between the nearest answer of the asked kind and the nearest of the question's own words in
    `sentence` (0 when adjacent), or None when it holds no such answer."""
    typed = typed_matches(kind, sentence, question)
    if not typed:
        return None
    asked = set(terms(question))
    anchors = [m.span() for m in _WORD.finditer(sentence) if set(terms(m.group())) & asked]
    if not anchors:
        return len(sentence.split())
    gaps = []
    for span in typed:
        for a, b in anchors:
            lo, hi = (b, span[0]) if b <= span[0] else (span[1], a) if span[1] <= a else (0, 0)
            gaps.append(len(sentence[lo:hi].split()))
    return min(gaps)


def _trim_name(sentence: str, a: int, b: int) -> tuple[int, int]:
    """A name without a sentence-initial function word ("The Council" → "Council") or trailing dot."""
    words = list(_WORD.finditer(sentence[a:b]))
    while words and words[0].group().lower() in STOPWORDS:
        words.pop(0)
    while words and words[-1].group().lower() in STOPWORDS:
        words.pop()
    if not words:
        return a, a
    return a + words[0].start(), a + words[-1].end()


def _is_bare_year_for_number(text: str) -> bool:
    return bool(re.fullmatch(r"(?:1[5-9]\d\d|20\d\d)", text.strip()))


def answer_span(question: str, sentence: str) -> tuple[int, int] | None:
    """(start, end) inside `sentence` of the part that answers `question`, or None when none can be told.

    The answer of the asked kind nearest the question's own words; otherwise the phrase beside
    them that they leave open (a cause for "why"). Never spans the whole of a long sentence.
    """
    asked = set(terms(question))
    anchors = [m.span() for m in _WORD.finditer(sentence) if set(terms(m.group())) & asked]
    kind = expected_answer_type(question)
    typed = typed_matches(kind, sentence, question)
    if typed:
        # a name sharing the question's words ("Andrey Baklanov" for "Baklanov") is its topic: others first
        return min(
            typed,
            key=lambda span: (bool(set(terms(sentence[span[0] : span[1]])) & asked), _distance(span, anchors), span[0]),
        )
    if not anchors or kind in ("date", "number"):
        return None  # a "when" answered without a date is not marked with something else
    if re.match(r"\s*why\b", question, re.IGNORECASE) and (cause := _CAUSE.search(sentence)):
        end = _BREAK.search(sentence, cause.end())
        return cause.start(), _rstrip(sentence, end.start() if end else len(sentence))
    return _slot_phrase(sentence, anchors, asked)


def _slot_phrase(sentence: str, anchors: list[tuple[int, int]], asked: set[str]) -> tuple[int, int] | None:
    """The run of words beside the question's words that is not made of them, cut at punctuation."""
    phrases = []
    for start, end in _segments(sentence, anchors):
        words = [m for m in _WORD.finditer(sentence, start, end)]
        while words and (words[0].group().lower() in STOPWORDS or set(terms(words[0].group())) & asked):
            words.pop(0)
        while words and (words[-1].group().lower() in STOPWORDS or set(terms(words[-1].group())) & asked):
            words.pop()
        if words and any(terms(w.group()) for w in words):
            phrases.append((words[0].start(), words[-1].end()))
    if not phrases:
        return None
    span = min(phrases, key=lambda p: (_distance(p, anchors), -(p[0] > anchors[0][0]), p[0]))
    if span[1] - span[0] > 0.8 * len(sentence.strip()) and len(sentence) > 80:
        return None  # marking nearly all of a long sentence points at nothing
    return span


def _segments(sentence: str, anchors: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Stretches of the sentence between punctuation breaks and the question's own words."""
    cuts = sorted([(m.start(), m.end()) for m in _BREAK.finditer(sentence)] + anchors)
    segments, at = [], 0
    for a, b in cuts:
        if a > at:
            segments.append((at, a))
        at = max(at, b)
    if at < len(sentence):
        segments.append((at, len(sentence)))
    return segments


def _distance(span: tuple[int, int], anchors: list[tuple[int, int]]) -> int:
    """Characters between a span and the nearest of the question's words in the sentence."""
    if not anchors:
        return 0
    return min(max(a - span[1], span[0] - b, 0) for a, b in anchors)


def _rstrip(sentence: str, end: int) -> int:
    while end > 0 and (sentence[end - 1].isspace() or sentence[end - 1] in ".!?"):
        end -= 1
    return end


EDGE_WORDS = frozenset("a an the and or but of in on at by for from to with into onto as".split())
"""Articles, conjunctions and prepositions a marked answer neither starts nor ends with: SQuAD's
answers drop them ("1955", not "in 1955"); "about" or "over" stay, they belong to a quantity."""
_EDGE_WORD = re.compile(r"\w+")


def trim_edges(text: str, start: int, end: int) -> tuple[int, int]:
    """`text[start:end]` without leading or trailing EDGE_WORDS ("in about 60 countries" → "about 60
    countries"); a span that is nothing else is left as it is."""
    words = [(m.start(), m.end()) for m in _EDGE_WORD.finditer(text, start, end)]
    while len(words) > 1 and text[words[0][0] : words[0][1]].lower() in EDGE_WORDS:
        words.pop(0)
    while len(words) > 1 and text[words[-1][0] : words[-1][1]].lower() in EDGE_WORDS:
        words.pop()
    if not words or all(text[a:b].lower() in EDGE_WORDS for a, b in words):
        return start, end
    return words[0][0], words[-1][1]

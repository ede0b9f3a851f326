"""Which phrase of a quoted sentence answers the question: every short run of words is a candidate
span, and a fitted model scores each (`rag/models/span_model.json`, written by training/fit_span_model.py from
the gold sentences of SQuAD v2.0's train half of articles). The best span is marked in the quote.

A span is always a slice of the sentence, never new text.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.answer.answer_types import _CAUSE, _WORD, answer_span, expected_answer_type, typed_matches
from rag.errors import ConfigError
from rag.index.bm25 import STOPWORDS, terms

MODEL_FILE = Path(__file__).parents[1] / "models" / "span_model.json"
MAX_WORDS = 10
"""The longest span considered, in words."""
KINDS = ("date", "number", "name", "place", "why", "other")
"""Question kinds; each kind has its own weights for the features, as each looks for a different phrase."""
FEATURES = (
    "bias",
    "words",
    "one_word",
    "chars",
    "question_words_inside",
    "left_gap",
    "right_gap",
    "near_gap",
    "next_to_question_word",
    "punctuation_inside",
    "break_before",
    "break_after",
    "starts_stopword",
    "ends_stopword",
    "starts_article",
    "capitals",
    "digits",
    "typed_overlap",
    "typed_exact",
    "typed_inside",
    "after_preposition",
    "position",
    "in_brackets",
    "cause",
    "stopword_share",
    "heuristic_overlap",
    "heuristic_exact",
    "after_verb_be",
    "focus_next",
    "focus_before",
    "words_1",
    "words_2",
    "words_3",
    "words_4",
    "left_gap_0",
    "left_gap_1",
    "right_gap_0",
    "right_gap_1",
    "capital_before",
    "capital_after",
    "starts_capital",
    "ends_capital",
    "whole_segment",
    "anchors_near",
    "next_is_preposition",
)
"""Features of one candidate span."""
_PREPOSITIONS = frozenset("in on at by of from to for as with into during since after before under over near".split())
_ARTICLES = frozenset("the a an".split())
_BE = frozenset("is was are were be been being became becomes called named known".split())
_BREAK_CHARS = re.compile(r"[,;:()\[\]\"“”—–]|\s-\s")
_WH = re.compile(r"^\s*(?:what|which|whose)\s+([a-z][\w-]*)", re.IGNORECASE)


@dataclass(frozen=True)
class SpanModel:
    """A linear score over standardised `FEATURES`, one row of weights per question kind (`KINDS`),
    fitted as a choice among each sentence's candidates (conditional logit)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    """Shape (len(KINDS), len(FEATURES))."""

    def scores(self, rows: np.ndarray, kind: str) -> np.ndarray:
        """Each candidate span's score: higher is likelier the answer; softmax over one sentence's
        candidates gives the probabilities."""
        return (rows - self.mean) / self.scale @ self.weights[KINDS.index(kind)]


@functools.lru_cache(maxsize=2)
def load_span_model(path: Path = MODEL_FILE) -> SpanModel:
    """The fitted span model, read once per process."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
        if tuple(spec["features"]) != FEATURES:
            raise ValueError("its features are not rag.answer.span_model.FEATURES")
        weights = np.asarray([spec["weights"][kind] for kind in KINDS], float)
        return SpanModel(np.asarray(spec["mean"], float), np.asarray(spec["scale"], float), weights)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"the span model {path} cannot be read ({type(error).__name__}: {error}); "
            f"reinstall rag or rerun training/fit_span_model.py"
        ) from None


def question_kind(question: str) -> str:
    """One of `KINDS`: the asked answer type, "why", or "other"."""
    kind = expected_answer_type(question)
    if kind is None and re.match(r"\s*why\b", question, re.IGNORECASE):
        return "why"
    return kind or "other"


def candidates(question: str, sentence: str) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Every run of up to `MAX_WORDS` words of `sentence` holding a word that is neither the question's
    own nor a function word, as (start, end) character spans, and one row of `FEATURES` for each."""
    words = list(_WORD.finditer(sentence))
    if not words:
        return [], np.zeros((0, len(FEATURES)))
    kind = question_kind(question)
    asked = set(terms(question))
    lowered = [w.group().lower() for w in words]
    is_asked = np.array([bool(set(terms(w)) & asked) for w in lowered])
    anchors = np.flatnonzero(is_asked)
    has_new_word = np.array([not asked_word and word not in STOPWORDS for asked_word, word in zip(is_asked, lowered)])
    breaks = [bool(_BREAK_CHARS.search(sentence[words[k].end() : words[k + 1].start()])) for k in range(len(words) - 1)]
    typed = typed_matches(None if kind in ("why", "other") else kind, sentence, question)
    heuristic = answer_span(question, sentence)
    focus = _WH.match(question)
    focus_terms = set(terms(focus.group(1))) if focus else set()
    n = len(words)
    i, j = [a.ravel() for a in np.meshgrid(np.arange(n), np.arange(MAX_WORDS), indexing="ij")]
    j = i + j
    keep = j < n
    i, j = i[keep], j[keep]
    new_words = np.concatenate([[0], np.cumsum(has_new_word)])
    keep = new_words[j + 1] - new_words[i] > 0  # only the question's own words and function words answer nothing
    i, j = i[keep], j[keep]
    starts = np.array([w.start() for w in words])
    ends = np.array([w.end() for w in words])
    a, b = starts[i], ends[j]
    word = _WordFacts(sentence, words, lowered, is_asked, breaks, focus_terms)
    rows = _span_features(word, i, j, a, b, anchors, typed, heuristic)
    return list(zip(a.tolist(), b.tolist())), rows


class _WordFacts:
    """Per-word facts of a sentence, as arrays, for the features of all its spans at once."""

    def __init__(self, sentence, words, lowered, is_asked, breaks, focus_terms):
        n = len(words)
        self.n = n
        self.asked = is_asked.astype(float)
        self.stop = np.array([w in STOPWORDS for w in lowered], float)
        self.article = np.array([w in _ARTICLES for w in lowered], float)
        self.preposition = np.array([w in _PREPOSITIONS for w in lowered], float)
        self.be = np.array([w in _BE for w in lowered], float)
        self.upper = np.array([w.group()[:1].isupper() for w in words], float)
        self.digit = np.array([any(ch.isdigit() for ch in w.group()) for w in words], float)
        self.focus = np.array([bool(set(terms(w)) & focus_terms) for w in lowered], float)
        self.opens = np.array([float("(" in sentence[max(0, w.start() - 2) : w.start()]) for w in words])
        self.closes = np.array([float(")" in sentence[w.end() : w.end() + 2]) for w in words])
        self.cause = np.array([bool(_CAUSE.match(sentence, w.start())) for w in words], float)
        self.breaks = np.asarray(breaks + [True], float)  # after word k; the end of the sentence is a break
        self.prefix = {
            name: np.concatenate([[0.0], np.cumsum(getattr(self, name))])
            for name in ("asked", "stop", "upper", "digit")
        }
        self.break_prefix = np.concatenate([[0.0], np.cumsum(self.breaks[:-1])])

    def total(self, name, i, j):
        """How many of words i..j (inclusive) have the fact."""
        return self.prefix[name][j + 1] - self.prefix[name][i]

    def before(self, name, i):
        """The fact of the word before i (0 for the first word)."""
        values = getattr(self, name)
        return np.where(i > 0, values[np.maximum(i - 1, 0)], 0.0)

    def after(self, name, j):
        """The fact of the word after j (0 for the last word)."""
        values = getattr(self, name)
        return np.where(j + 1 < self.n, values[np.minimum(j + 1, self.n - 1)], 0.0)


def _span_features(word: _WordFacts, i, j, a, b, anchors, typed, heuristic) -> np.ndarray:
    n = word.n
    length = j - i + 1
    if len(anchors):
        at = np.searchsorted(anchors, i)  # anchors before i: anchors[:at]
        left_gap = np.where(at > 0, i - anchors[np.maximum(at - 1, 0)] - 1, 12)
        after = np.searchsorted(anchors, j, side="right")
        right_gap = np.where(after < len(anchors), anchors[np.minimum(after, len(anchors) - 1)] - j - 1, 12)
        middle = (i + j) / 2
        anchors_near = (np.abs(anchors[None, :] - middle[:, None]) <= (length / 2 + 3)[:, None]).sum(axis=1) / 3.0
    else:
        left_gap = right_gap = np.full(len(i), 12)
        anchors_near = np.zeros(len(i))
    capitals = word.total("upper", i, j) - np.where((i == 0) & (length == 1), word.upper[0], 0.0)
    overlap = np.zeros(len(i), bool)
    exact = np.zeros(len(i), bool)
    inside = np.zeros(len(i), bool)
    for s, e in typed:
        hit = (s < b) & (a < e)
        overlap |= hit
        exact |= (a == s) & (b == e)
        inside |= hit & (a <= s) & (e <= b)
    if heuristic is not None:
        inter = np.maximum(0, np.minimum(b, heuristic[1]) - np.maximum(a, heuristic[0]))
        union = np.maximum(1, np.maximum(b, heuristic[1]) - np.minimum(a, heuristic[0]))
        heuristic_overlap, heuristic_exact = inter / union, (a == heuristic[0]) & (b == heuristic[1])
    else:
        heuristic_overlap, heuristic_exact = np.zeros(len(i)), np.zeros(len(i), bool)
    break_before = np.where(i > 0, word.breaks[np.maximum(i - 1, 0)], 1.0)
    break_after = word.breaks[j]
    columns = [
        np.ones(len(i)),
        length / MAX_WORDS,
        length == 1,
        np.minimum(b - a, 80) / 80.0,
        word.total("asked", i, j) / length,
        np.minimum(left_gap, 12) / 12.0,
        np.minimum(right_gap, 12) / 12.0,
        np.minimum(np.minimum(left_gap, right_gap), 12) / 12.0,
        (left_gap == 0) | (right_gap == 0),
        word.break_prefix[j] - word.break_prefix[i],
        break_before,
        break_after,
        word.stop[i],
        word.stop[j],
        word.article[i],
        capitals / length,
        word.total("digit", i, j) > 0,
        overlap,
        exact,
        inside,
        word.before("preposition", i),
        i / max(1, n - 1),
        word.opens[i] * word.closes[j],
        word.cause[i],
        word.total("stop", i, j) / length,
        heuristic_overlap,
        heuristic_exact,
        word.before("be", i),
        word.after("focus", j),
        word.before("focus", i),
        length == 1,
        length == 2,
        length == 3,
        length == 4,
        left_gap == 0,
        left_gap == 1,
        right_gap == 0,
        right_gap == 1,
        np.where(i > 0, (1 - break_before) * word.before("upper", i), 0.0),
        np.where(j + 1 < n, (1 - break_after) * word.after("upper", j), 0.0),
        word.upper[i],
        word.upper[j],
        ((break_before > 0) | (word.before("asked", i) > 0)) & ((break_after > 0) | (word.after("asked", j) > 0)),
        anchors_near,
        word.after("preposition", j),
    ]
    return np.column_stack([np.asarray(c, float) for c in columns])


def best_span(question: str, sentence: str, model: SpanModel | None = None) -> tuple[int, int] | None:
    """(start, end) inside `sentence` of the phrase that answers `question`, or None when it has no
    words but the question's own."""
    spans, rows = candidates(question, sentence)
    if not spans:
        return None
    scores = (model or load_span_model()).scores(rows, question_kind(question))
    return spans[int(np.argmax(scores))]


def best_span_score(question: str, sentence: str, model: SpanModel | None = None) -> float:
    """The best candidate span's score (-10 when there is none): how sure the sentence holds a phrase that answers."""
    spans, rows = candidates(question, sentence)
    if not spans:
        return -10.0
    return float((model or load_span_model()).scores(rows, question_kind(question)).max())

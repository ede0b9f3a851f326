"""How well a sentence answers a question: the features of each candidate sentence, and the fitted
model that turns them into its relevance (0–1), which both ranks quotes and decides abstention.

The model is a logistic regression whose parameters live in `rag/models/answer_model.json`, written by
`training/fit_answer_model.py` from SQuAD v2.0 (one half of its articles) and SciFact train claims;
that script also writes the abstention threshold of each scoring mode into the same file.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.answer.answer_types import expected_answer_type, typed_distance
from rag.errors import ConfigError
from rag.index.bm25 import terms
from rag.types import Hit

MODEL_FILE = Path(__file__).parents[1] / "models" / "answer_model.json"
MODES = ("sentence_scoring", "passage_only")
"""Scoring modes: with each candidate sentence embedded and compared with the question, or without."""
FEATURES = (
    "sentence_cosine",
    "clause_gain",
    "cosine_gap",
    "cosine_rank",
    "rank_agreement",
    "passage_cosine",
    "passage_cosine_gap",
    "fused",
    "passage_rank",
    "passage_bm25",
    "sentence_bm25",
    "lexical_rank",
    "overlap",
    "weighted_overlap",
    "overlap_gap",
    "passage_overlap",
    "key_terms_in_sentence",
    "key_terms_in_passage",
    "has_key_terms",
    "position",
    "first_in_passage",
    "is_question",
    "length",
    "asks_typed",
    "holds_type",
    "asks_date",
    "asks_number",
    "asks_name",
    "asks_place",
    "asks_why",
    "asks_how",
    "negation_mismatch",
    "question_terms",
    "typed_near",
    "no_final_stop",
    "date_held",
    "number_held",
    "name_near",
    "place_near",
)
"""Every feature, in column order. The first five need sentence scoring (the embedder on each sentence)."""
NEEDS_SENTENCE_SCORING = frozenset(FEATURES[:5])
_KEY_TERM = re.compile(r"[A-Z][\w'’-]*|\d[\d,.]*\d|\d")
_NEGATION = re.compile(r"\b(?:not|no|never|none|neither|nor|without|n't)\b|n't\b", re.IGNORECASE)
_FINAL_STOP = re.compile(r"[.!?…][\"'”’)\]]*\s*$")
BM25_K1, BM25_B = 1.2, 0.75


def ends_like_a_sentence(text: str) -> bool:
    """Whether `text` ends with a full stop, question or exclamation mark (closing quotes or brackets after it
    allowed): a headline does not. A feature of the answer model, and part of what makes a heading."""
    return bool(_FINAL_STOP.search(text))


@dataclass(frozen=True)
class Sentence:
    """One sentence of a retrieved passage, where it stands there, and the rank of its passage."""

    hit: Hit
    start: int
    end: int
    text: str
    passage_rank: int
    index: int
    """Its place among the sentences of its passage, from 0."""
    count: int
    """How many sentences its passage has."""


@dataclass(frozen=True)
class Model:
    """Logistic regression over some of `FEATURES`, standardised, and the threshold to abstain below."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float

    def relevance(self, rows: np.ndarray) -> np.ndarray:
        """The probability that each row's sentence answers the question (rows: one per sentence, all FEATURES)."""
        if len(rows) == 0:
            return np.zeros(0)
        columns = [FEATURES.index(name) for name in self.features]
        z = (rows[:, columns] - self.mean) / self.scale @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def mode(sentence_scoring: bool) -> str:
    """The scoring mode's name in the model file."""
    return MODES[0] if sentence_scoring else MODES[1]


@functools.lru_cache(maxsize=4)
def load_model(scoring_mode: str, path: Path = MODEL_FILE) -> Model:
    """The fitted model of one scoring mode, read once per process."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))["modes"][scoring_mode]
        return Model(
            tuple(spec["features"]),
            np.asarray(spec["mean"], float),
            np.asarray(spec["scale"], float),
            np.asarray(spec["weights"], float),
            float(spec["bias"]),
            float(spec["threshold"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"the answer model {path} cannot be read for mode {scoring_mode!r} ({type(error).__name__}: {error}); "
            f"reinstall rag or rerun training/fit_answer_model.py"
        ) from None


def question_profile(question: str) -> dict:
    """What the features need to know about the question, worked out once."""
    question_terms = terms(question)
    kind = expected_answer_type(question)
    lowered = question.lower().lstrip()
    return {
        "text": question,
        "terms": set(question_terms),
        "kind": kind,
        "key_terms": key_terms(question),
        "why": lowered.startswith("why"),
        "how": lowered.startswith("how") and kind is None,
        "negated": bool(_NEGATION.search(question)),
    }


def key_terms(question: str) -> set[str]:
    """The question's names and numbers (capitalised words after its first, digits), lower-cased."""
    words = question.split()[1:]
    return {
        w.lower()
        for word in words
        for w in [word.strip(".,;:?!\"'()“”‘’").removesuffix("'s").removesuffix("’s")]
        if w and _KEY_TERM.fullmatch(w)
    }


def feature_rows(
    question: str,
    sentences: Sequence[Sentence],
    sentence_cosines: Sequence[float] | None = None,
    clause_cosines: Sequence[float] | None = None,
) -> np.ndarray:
    """One row of `FEATURES` per sentence. Without sentence scoring the first five columns are 0."""
    if not sentences:
        return np.zeros((0, len(FEATURES)))
    profile = question_profile(question)
    sentence_terms = [terms(s.text) for s in sentences]
    bm25, idf = _local_bm25(profile["terms"], sentence_terms)
    passage_terms = {s.hit.passage.id: set(terms(s.hit.passage.text)) for s in sentences}
    dense = np.array([s.hit.dense for s in sentences])
    best_lexical = max((s.hit.lexical for s in sentences), default=0.0)
    q_weight = sum(idf.get(t, max(idf.values(), default=1.0)) for t in profile["terms"]) or 1.0
    overlaps = np.array([_share(profile["terms"], set(words)) for words in sentence_terms])
    lexical_rank = _ranks(bm25)
    rows = np.zeros((len(sentences), len(FEATURES)))
    column = {name: i for i, name in enumerate(FEATURES)}
    if sentence_cosines is not None:
        cosines = np.asarray(sentence_cosines, float)
        clauses = np.asarray(clause_cosines if clause_cosines is not None else cosines, float)
        cosine_rank = _ranks(cosines)
        rows[:, column["sentence_cosine"]] = cosines
        rows[:, column["clause_gain"]] = np.maximum(0.0, clauses - cosines)
        rows[:, column["cosine_gap"]] = cosines - cosines.max()
        rows[:, column["cosine_rank"]] = 1.0 / (1.0 + cosine_rank)
        rows[:, column["rank_agreement"]] = 1.0 / (1.0 + np.abs(cosine_rank - lexical_rank))
    rows[:, column["passage_cosine"]] = dense
    rows[:, column["passage_cosine_gap"]] = dense - dense.max()
    rows[:, column["sentence_bm25"]] = bm25 / bm25.max() if bm25.max() > 0 else 0.0
    rows[:, column["lexical_rank"]] = 1.0 / (1.0 + lexical_rank)
    rows[:, column["overlap"]] = overlaps
    rows[:, column["overlap_gap"]] = overlaps - overlaps.max()
    kind = profile["kind"]
    for i, (s, words) in enumerate(zip(sentences, sentence_terms)):
        row = rows[i]
        row[column["fused"]] = s.hit.score
        row[column["passage_rank"]] = 1.0 / (1.0 + s.passage_rank)
        row[column["passage_bm25"]] = s.hit.lexical / best_lexical if best_lexical > 0 else 0.0
        row[column["weighted_overlap"]] = sum(idf[t] for t in profile["terms"] & set(words)) / q_weight
        row[column["passage_overlap"]] = _share(profile["terms"], passage_terms[s.hit.passage.id])
        row[column["key_terms_in_sentence"]] = _key_share(profile["key_terms"], s.text)
        row[column["key_terms_in_passage"]] = _key_share(profile["key_terms"], s.hit.passage.text)
        row[column["has_key_terms"]] = float(bool(profile["key_terms"]))
        row[column["position"]] = s.index / max(1, s.count - 1)
        row[column["first_in_passage"]] = float(s.index == 0)
        row[column["is_question"]] = float(s.text.rstrip().endswith("?"))
        row[column["length"]] = math.log1p(len(s.text)) / 6.0
        row[column["asks_typed"]] = float(kind is not None)
        gap = typed_distance(kind, s.text, question)
        row[column["holds_type"]] = float(gap is not None)
        row[column["typed_near"]] = 0.0 if gap is None else 1.0 / (1.0 + gap / 3.0)
        row[column["no_final_stop"]] = float(not ends_like_a_sentence(s.text))
        for name in ("date", "number", "name", "place"):
            row[column[f"asks_{name}"]] = float(kind == name)
        # each kind of question weighs an answer of its type in the sentence its own way
        row[column["date_held"]] = float(kind == "date" and gap is not None)
        row[column["number_held"]] = float(kind == "number" and gap is not None)
        row[column["name_near"]] = row[column["typed_near"]] if kind == "name" else 0.0
        row[column["place_near"]] = row[column["typed_near"]] if kind == "place" else 0.0
        row[column["asks_why"]] = float(profile["why"])
        row[column["asks_how"]] = float(profile["how"])
        row[column["negation_mismatch"]] = float(profile["negated"] and not _NEGATION.search(s.text))
        row[column["question_terms"]] = math.log1p(len(profile["terms"])) / 3.0
    return rows


def _share(wanted: set[str], present: set[str]) -> float:
    return len(wanted & present) / len(wanted) if wanted else 0.0


def _key_share(keys: set[str], text: str) -> float:
    """Share of the question's names and numbers that `text` holds (1.0 when it has none)."""
    if not keys:
        return 1.0
    lowered = text.lower()
    return sum(1 for key in keys if key in lowered) / len(keys)


def _ranks(values: np.ndarray) -> np.ndarray:
    """0 for the highest value, 1 for the next, …"""
    order = np.argsort(-np.asarray(values, float), kind="stable")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(len(order))
    return ranks


def _local_bm25(question_terms: set[str], sentence_terms: list[list[str]]) -> tuple[np.ndarray, dict[str, float]]:
    """BM25 of each sentence for the question, with document frequencies taken over these sentences."""
    n = len(sentence_terms)
    df = Counter(t for words in sentence_terms for t in set(words) if t in question_terms)
    idf = {t: math.log(1 + (n - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5)) for t in question_terms}
    average = sum(len(words) for words in sentence_terms) / n or 1.0
    scores = np.zeros(n)
    for i, words in enumerate(sentence_terms):
        counts = Counter(words)
        norm = BM25_K1 * (1 - BM25_B + BM25_B * len(words) / average)
        scores[i] = sum(idf[t] * counts[t] * (BM25_K1 + 1) / (counts[t] + norm) for t in question_terms if counts[t])
    return scores, idf

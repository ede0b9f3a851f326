"""Candidate quotes: every sentence of the best passages, with its relevance to the question (0–1)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.answer.relevance import Sentence, feature_rows, load_model, mode
from rag.config import Settings
from rag.ingest.chunking import split_sentences
from rag.types import Hit


@dataclass(frozen=True)
class Candidate:
    """One sentence that could be quoted, where it stands, and how well it answers (`relevance`, 0–1).

    `context_start`/`context_end` take in the neighbouring sentences shown around the quote;
    `answer_start`/`answer_end` mark the answer inside it, when one can be told (all source offsets).
    """

    hit: Hit
    start: int
    end: int
    text: str
    relevance: float
    context_start: int | None = None
    context_end: int | None = None
    answer_start: int | None = None
    answer_end: int | None = None


def candidate_sentences(hits: Sequence[Hit]) -> list[Sentence]:
    """Every sentence of the hits once (overlapping passages repeat some: the better-ranked one keeps it)."""
    seen: set[tuple[str, int]] = set()
    sentences = []
    for rank, hit in enumerate(hits):
        passage = hit.passage
        spans = split_sentences(passage.text)
        for i, (a, b) in enumerate(spans):
            key = (passage.source, passage.start + a)
            if key not in seen:
                seen.add(key)
                sentences.append(
                    Sentence(hit, passage.start + a, passage.start + b, passage.text[a:b], rank, i, len(spans))
                )
    return sentences


def sentence_cosines(
    sentences: Sequence[Sentence], query_vector: np.ndarray, embedder
) -> tuple[list[float], list[float]]:
    """Each sentence's cosine with the question, and its best clause's (the sentence's own when it has one)."""
    clauses = [_clauses(s.text) for s in sentences]
    texts = [s.text for s in sentences] + [c for parts in clauses for c in parts]
    sims = (embedder.encode(texts, batch_size=64) @ query_vector).tolist()
    whole = sims[: len(sentences)]
    best_clause, at = [], len(sentences)
    for sim, parts in zip(whole, clauses):
        best_clause.append(max(sims[at : at + len(parts)], default=sim))
        at += len(parts)
    return whole, best_clause


def score_sentences(
    question: str, query_vector: np.ndarray, hits: Sequence[Hit], embedder, settings: Settings
) -> list[Candidate]:
    """Every sentence of the hits with its relevance from the fitted model (rag/models/answer_model.json)."""
    sentences = candidate_sentences(hits)
    if not sentences:
        return []
    scoring = settings.sentence_scoring
    cosines, clauses = sentence_cosines(sentences, query_vector, embedder) if scoring else (None, None)
    rows = feature_rows(question, sentences, cosines, clauses)
    relevance = load_model(mode(scoring)).relevance(rows)
    return [Candidate(s.hit, s.start, s.end, s.text, float(r)) for s, r in zip(sentences, relevance)]


_CLAUSE_BREAK = re.compile(r"[:;]\s+|\s+[–—-]\s+")


def _clauses(sentence: str, min_words: int = 4) -> list[str]:
    """The clauses of a sentence split at colons, semicolons and dashes; none when it has only one."""
    parts = [part.strip() for part in _CLAUSE_BREAK.split(sentence)]
    parts = [part for part in parts if len(part.split()) >= min_words]
    return parts if len(parts) >= 2 else []

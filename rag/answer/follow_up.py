"""Follow-up questions: whether a question leans on the one before it, and what to search for then."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.index.bm25 import terms

REFERRING = frozenset("it its they them their theirs he she him her his hers this these those there then such".split())
"""Words that point back at something named earlier in the conversation."""


ELLIPSIS = re.compile(r"^\s*(?:and|also|but|or|so|then|what about|how about|same for|and what about)\b", re.IGNORECASE)
"""Openings of a question that continues the previous one ("and when?", "what about Paris?")."""


FOLLOW_UP_SIMILARITY = 0.5
"""A question whose embedding is at least this close to the previous question's is a follow-up."""


def refers_back(question: str) -> bool:
    """True when the question leans on an earlier one: a pointing word ("it", "there"), an opening
    that continues ("and…", "what about…"), or no words of its own to search for ("Why?")."""
    words = [w.strip("?,.!;:\"'()").lower() for w in question.split()]
    if ELLIPSIS.match(question) or not terms(question):
        return True
    # "there is/are…" and "is there…" are existential, not the place named before
    pointing = [w for i, w in enumerate(words) if w in REFERRING and not (w == "there" and _existential(words, i))]
    return bool(pointing)


def _existential(words: list[str], i: int) -> bool:
    return (i + 1 < len(words) and words[i + 1] in {"is", "are", "was", "were", "be", "been"}) or (
        i > 0 and words[i - 1] in {"is", "are", "was", "were"}
    )


def is_follow_up(question: str, previous: str, embedder=None) -> bool:
    """Whether `question` continues `previous`: it refers back, or (given the embedder) it means
    nearly the same thing as the previous question, so searching the two together loses nothing."""
    if refers_back(question):
        return True
    if embedder is None:
        return False
    vectors = embedder.encode([question, previous])
    return float(vectors[0] @ vectors[1]) >= FOLLOW_UP_SIMILARITY


def contextualize(question: str, history: Sequence[str] = (), embedder=None) -> str:
    """What to search for: a follow-up (see `is_follow_up`) is joined to the previous question."""
    if history and is_follow_up(question, history[-1], embedder):
        return f"{history[-1]} {question}"
    return question

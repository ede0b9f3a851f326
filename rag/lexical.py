"""BM25 beside the dense index: stemmed English terms, scored with bm25s."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.errors import IndexDamaged

_WORD = re.compile(r"(?u)\b\w\w+\b")

# A compact English stop list: function words that carry no topic.
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves also s t don
    """.split()
)


TOKENIZER = {
    "name": "rag-bm25-terms",
    "version": 1,
    "token_pattern": _WORD.pattern,
    "lowercase": True,
    "stopwords": hashlib.sha256(" ".join(sorted(STOPWORDS)).encode()).hexdigest()[:16],
    "stemmer": "snowball-english",
}
"""What decides the BM25 terms of a text. The manifest records it, so an index built with other
stop words, another token pattern or stemmer is rebuilt, never searched with mismatched terms.
Raise `version` whenever `terms` changes in a way the other entries do not show."""


def _bm25s():
    """bm25s, imported late (it is slow to import) and with its debug logging turned down."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


@functools.lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words of `text`, in order."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    return _stemmer().stemWords(words) if words else []


class LexicalIndex:
    """A BM25 index over passages, in the same row order as the dense index."""

    def __init__(self, retriever, size: int):
        self._retriever = retriever
        self.size = size

    @classmethod
    def build(cls, texts: Sequence[str]) -> "LexicalIndex":
        """Index passage texts; an empty passage list still gives a usable (empty) index."""
        bm25s = _bm25s()
        corpus = [terms(t) or [""] for t in texts] or [[""]]
        retriever = bm25s.BM25()
        retriever.index(corpus, show_progress=False)
        return cls(retriever, len(texts))

    def save(self, folder: Path) -> None:
        self._retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path, size: int) -> "LexicalIndex":
        bm25s = _bm25s()
        try:
            retriever = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        except (OSError, ValueError, KeyError) as error:
            raise IndexDamaged(f"BM25 files in {folder} are damaged ({error}); run `rag build --full`") from None
        return cls(retriever, size)

    def scores(self, query: str) -> np.ndarray | None:
        """The BM25 score of every passage for `query`, or None when no query term is indexed."""
        vocab = self._retriever.vocab_dict
        known = [t for t in terms(query) if t in vocab]
        if not known or self.size == 0:
            return None
        return np.asarray(self._retriever.get_scores(known))[: self.size]

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """Top `k` (row, score) pairs with a positive score, best first."""
        scores = self.scores(query)
        return [] if scores is None else top(scores, k)


def top(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The `k` highest positive (row, score) pairs of a score array, best first."""
    k = min(k, len(scores))
    if k < 1:
        return []
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best if scores[i] > 0]

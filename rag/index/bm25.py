"""BM25 beside the dense index: stemmed English terms, postings per segment, scores over all of them."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from array import array
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

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


@functools.lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words of `text`, in order."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    return _stemmer().stemWords(words) if words else []


K1, B = 1.5, 0.75
"""BM25 parameters (Lucene's variant and defaults, as bm25s and Anserini use them)."""
VOCAB, STARTS, ROWS, COUNTS, LENGTHS = "vocab.json", "starts.npy", "rows.npy", "counts.npy", "lengths.npy"


class Postings:
    """One segment's terms: for each term the rows that hold it and how often, and each row's length.

    Only counts are stored, never scores: BM25's document frequencies and average length are taken
    over all live segments at question time, so a passage scores the same whichever segment holds it.
    """

    def __init__(
        self, vocab: dict[str, int], starts: np.ndarray, rows: np.ndarray, counts: np.ndarray, lengths: np.ndarray
    ):
        self.vocab, self.starts, self.rows, self.counts, self.lengths = vocab, starts, rows, counts, lengths

    @classmethod
    def build(cls, texts: Sequence[str]) -> Postings:
        """The postings of passage texts, row by row."""
        vocab: dict[str, int] = {}
        flat = array("i")
        lengths = np.zeros(len(texts), dtype=np.int32)
        for row, text in enumerate(texts):
            words = terms(text)
            lengths[row] = len(words)
            flat.extend(vocab.setdefault(w, len(vocab)) for w in words)
        term_ids = np.frombuffer(flat, dtype=np.int32) if len(flat) else np.zeros(0, dtype=np.int32)
        size = max(1, len(texts))
        pairs, counts = np.unique(
            term_ids.astype(np.int64) * size + np.repeat(np.arange(len(texts)), lengths), return_counts=True
        )
        starts = np.zeros(len(vocab) + 1, dtype=np.int64)
        np.cumsum(np.bincount(pairs // size, minlength=len(vocab)), out=starts[1:])
        return cls(vocab, starts, (pairs % size).astype(np.int32), counts.astype(np.float32), lengths)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        words = sorted(self.vocab, key=self.vocab.__getitem__)
        (folder / VOCAB).write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
        for name, values in ((STARTS, self.starts), (ROWS, self.rows), (COUNTS, self.counts), (LENGTHS, self.lengths)):
            np.save(folder / name, values)

    @classmethod
    def load(cls, folder: Path, size: int) -> Postings:
        """The postings saved in `folder` for `size` passages (arrays memory-mapped), or IndexDamaged."""
        try:
            words = json.loads((folder / VOCAB).read_text(encoding="utf-8"))
            starts, rows, counts, lengths = (
                np.load(folder / name, mmap_mode="r") for name in (STARTS, ROWS, COUNTS, LENGTHS)
            )
        except (OSError, ValueError) as error:
            raise IndexDamaged(f"BM25 files in {folder} are damaged ({error}); run `rag build --full`") from None
        if (
            not isinstance(words, list)
            or len(starts) != len(words) + 1
            or len(lengths) != size
            or int(starts[-1]) != len(rows)
            or len(rows) != len(counts)
        ):
            raise IndexDamaged(f"BM25 files in {folder} are out of step; run `rag build --full`")
        return cls({w: i for i, w in enumerate(words)}, starts, rows, counts, lengths)

    def get(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The rows holding `term` and its count in each, or None."""
        at = self.vocab.get(term)
        if at is None:
            return None
        start, end = int(self.starts[at]), int(self.starts[at + 1])
        return self.rows[start:end], self.counts[start:end]


class LexicalIndex:
    """BM25 over the live passages of several segments, numbered as one index.

    `parts` are the index's segments in order, each with `postings`, `dead` (a mask of deleted rows,
    or None), `live_length` (the summed length of its live rows) and `global_rows(rows)`.
    """

    def __init__(self, parts: Sequence, size: int):
        self._parts = parts
        self.size = size
        total = sum(part.live_length for part in parts)
        self._average = total / size if size and total else 1.0

    def scores(self, query: str) -> np.ndarray | None:
        """The BM25 score of every live passage for `query`, or None when no query term is indexed."""
        found = []
        for term, times in Counter(terms(query)).items():
            hits = []
            for part in self._parts:
                posting = part.postings.get(term)
                if posting is None:
                    continue
                rows, counts = posting
                if part.dead is not None:
                    keep = ~part.dead[rows]
                    rows, counts = rows[keep], counts[keep]
                if len(rows):
                    hits.append((part, rows, counts))
            frequency = sum(len(rows) for _, rows, _ in hits)
            if frequency:
                found.append((times, frequency, hits))
        if not found or self.size == 0:
            return None
        scores = np.zeros(self.size, dtype=np.float32)
        for times, frequency, hits in found:
            idf = math.log(1 + (self.size - frequency + 0.5) / (frequency + 0.5))
            for part, rows, counts in hits:
                norm = K1 * (1 - B + B * part.postings.lengths[rows] / self._average)
                scores[part.global_rows(rows)] += (times * idf * counts / (counts + norm)).astype(np.float32)
        return scores

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

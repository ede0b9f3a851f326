"""A version as its readers see it: each segment's live rows, and the passages and vectors of all of them as one
sequence, so that a search over segments ranks as a search over one index would."""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.index.segment import Segment


@dataclass
class Part:
    """One segment as a version sees it: the segment, its deleted rows, and where its live rows
    start in the version's row numbering (live rows of all segments, in segment order)."""

    segment: Segment
    deleted: tuple[str, ...]
    base: int = 0
    dead: np.ndarray | None = None
    """True for each deleted row; None when nothing was deleted."""
    live_rows: np.ndarray | None = None
    """The segment rows still live, in order (version row − base → segment row)."""
    rank: np.ndarray | None = None
    """For each segment row, its place among the live rows (segment row → version row − base)."""
    live_bitmap: np.ndarray | None = None
    """Live rows as the bit set FAISS filters a search with."""
    live: int = 0

    def __post_init__(self):
        size = self.segment.info.passages
        self.live = size
        if self.deleted:
            dead = np.zeros(size, dtype=bool)
            for source in self.deleted:
                start, end = self.segment.info.files.get(source, (0, 0))
                dead[start:end] = True
            if dead.any():
                self.dead, self.live_rows = dead, np.flatnonzero(~dead).astype(np.int64)
                self.rank = np.cumsum(~dead, dtype=np.int64) - 1
                self.live_bitmap = np.packbits(~dead, bitorder="little")
                self.live = len(self.live_rows)

    @functools.cached_property
    def _file_starts(self) -> tuple[list[str], np.ndarray]:
        """The segment's files in row order, and the row each starts at."""
        files = self.segment.info.files
        names = sorted(files, key=lambda source: files[source][0])
        return names, np.array([files[name][0] for name in names], dtype=np.int64)

    def order_keys(self, rows) -> list[tuple[str, int]]:
        """(source, passage number) of segment rows: the order equal scores are ranked in, the same
        whichever segment holds a passage."""
        names, starts = self._file_starts
        at = np.searchsorted(starts, np.asarray(rows, dtype=np.int64), side="right") - 1
        return [(names[i], int(row) - int(starts[i]) + 1) for i, row in zip(at.tolist(), np.asarray(rows).tolist())]

    @property
    def live_length(self) -> int:
        lengths = self.segment.postings.lengths
        return int(lengths.sum()) - (int(lengths[self.dead].sum()) if self.dead is not None else 0)

    @property
    def postings(self):
        return self.segment.postings

    def bitmap_of(self, sources: frozenset[str]) -> tuple[np.ndarray | None, int]:
        """The FAISS bit set of this segment's live rows of `sources`, and how many there are (kept for reuse)."""
        cache = self.__dict__.setdefault("_bitmaps", {})
        if sources in cache:
            return cache[sources]
        if len(cache) > 32:
            cache.clear()
        keep = np.zeros(self.segment.info.passages, dtype=bool)
        for source in sources:
            if source not in self.deleted:
                start, end = self.segment.info.files.get(source, (0, 0))
                keep[start:end] = True
        if self.dead is not None:
            keep &= ~self.dead
        cache[sources] = np.packbits(keep, bitorder="little"), int(keep.sum())
        return cache[sources]

    def global_rows(self, rows: np.ndarray) -> np.ndarray:
        """Version rows of live segment rows."""
        rows = np.asarray(rows, dtype=np.int64)
        return self.base + (rows if self.rank is None else self.rank[rows])

    def local_row(self, row: int) -> int:
        """The segment row of version row `row` (which must fall in this part)."""
        at = row - self.base
        return at if self.live_rows is None else int(self.live_rows[at])


class LivePassages(Sequence):
    """The live passages of every segment, numbered as one index (rows stay on disk)."""

    def __init__(self, parts: list[Part]):
        self.parts = parts
        self._bases = [part.base for part in parts]
        self._size = sum(part.live for part in parts)

    def __len__(self) -> int:
        return self._size

    def locate(self, row: int) -> tuple[Part, int]:
        """The part holding version row `row`, and the row inside its segment."""
        if not 0 <= row < self._size:
            raise IndexError(row)
        part = self.parts[bisect.bisect_right(self._bases, row) - 1]
        return part, part.local_row(row)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row) + (self._size if row < 0 else 0)
        part, local = self.locate(row)
        return part.segment.passages[local]

    def order_keys(self, rows) -> list[tuple[str, int]]:
        """(source, passage number) of version rows, read from the segments' file tables (no passage read)."""
        rows = np.asarray(rows, dtype=np.int64)
        keys: list = [None] * len(rows)
        for part in self.parts:
            inside = np.flatnonzero((rows >= part.base) & (rows < part.base + part.live))
            if len(inside):
                local = rows[inside] - part.base
                local = local if part.live_rows is None else part.live_rows[local]
                for i, key in zip(inside.tolist(), part.order_keys(local)):
                    keys[i] = key
        return keys


class LiveVectors:
    """The stored vectors of the live passages, read a few rows at a time by version row."""

    def __init__(self, passages: LivePassages, dimension: int):
        self._passages, self.shape = passages, (len(passages), dimension)

    def __len__(self) -> int:
        return self.shape[0]

    def all(self) -> np.ndarray:
        """Every live vector in row order, in memory (for tests, benches and comparisons)."""
        blocks = []
        for part in self._passages.parts:
            block = np.asarray(part.segment.vectors.block(0, part.segment.info.passages))
            blocks.append(block if part.live_rows is None else block[part.live_rows])
        return np.vstack(blocks) if blocks else np.zeros(self.shape, dtype=np.float32)

    def __getitem__(self, rows) -> np.ndarray:
        located = [self._passages.locate(int(r)) for r in np.atleast_1d(rows)]
        if not located:
            return np.zeros((0, self.shape[1]), dtype=np.float32)
        return np.vstack([part.segment.vectors[[local]] for part, local in located])


def settle_ties(pairs: list[tuple[int, float]], passages: LivePassages, k: int) -> list[tuple[int, float]]:
    """The `k` best (row, score) pairs, best first; equal scores in (source, passage number) order,
    so which of several tied passages is kept does not depend on how the index is segmented."""
    if k < 1 or not pairs:
        return []
    if len(pairs) > k:
        last = sorted((score for _, score in pairs), reverse=True)[k - 1]
        pairs = [pair for pair in pairs if pair[1] >= last]
    keys = passages.order_keys([row for row, _ in pairs])
    order = sorted(range(len(pairs)), key=lambda i: (-pairs[i][1], keys[i]))
    return [pairs[i] for i in order[:k]]

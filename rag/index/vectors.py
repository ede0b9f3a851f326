"""The dense side of a segment: the FAISS index over its unit vectors, and the stored vectors read by row."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from rag.errors import IndexDamaged
from rag.index.disk import RowFile

APPROXIMATE_ABOVE = 200_000
"""Segments with more passages than this get an IVF index with 8-bit vectors instead of an exact scan, whose
cost grows with the passages (docs/decisions.md, "Exact search up to 200,000 passages")."""


NPROBE = 64
"""IVF lists searched per query: recall@10 against exact search stays above 0.95 (docs/decisions.md)."""


SEARCH_THREADS = 1
"""OpenMP threads of one question's FAISS search, in the asking thread and for the search alone.
A single query gains little from threads and loses much when the cores are busy."""


@contextlib.contextmanager
def search_threads():
    """Run a FAISS search on SEARCH_THREADS OpenMP threads, then give the thread its own number back. FAISS and
    torch share one OpenMP runtime: left set, the setting also held every later torch call of that thread, so a
    build after a question in the same thread (`rag eval`, a notebook) would embed on one core."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(SEARCH_THREADS)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def make_faiss(vectors: np.ndarray, approximate_above: int = APPROXIMATE_ABOVE):
    """An inner-product index over unit vectors: exact while small, IVF-SQ8 beyond the threshold
    (a quarter of the memory of exact search, so a million passages serve in well under 2 GB).

    The exact index scans every vector in half precision (`flat-fp16`): half the bytes a question reads, and
    `Segment.search` gives the rows it finds their float32 cosines from vectors.npy, so only which rows make the
    cut can differ from a float32 scan (by ~1e-4 of a cosine)."""
    import faiss

    dimension = vectors.shape[1]
    if len(vectors) <= approximate_above:
        index = faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        if len(vectors):
            index.add(vectors)
        return index
    nlist = max(1, min(int(4 * len(vectors) ** 0.5), len(vectors) // 39))
    quantizer = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dimension, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    sample = np.random.default_rng(0).choice(len(vectors), size=min(len(vectors), 64 * nlist), replace=False)
    index.train(np.ascontiguousarray(vectors[np.sort(sample)]))
    index.add(vectors)
    index.nprobe = NPROBE
    return index


def faiss_kind(index) -> str:
    """A short name of the FAISS index type, for segment.json and `rag status`."""
    name = type(index).__name__
    return "ivf-sq8" if "IVF" in name else "flat-fp16" if "ScalarQuantizer" in name else "flat"


class VectorRows:
    """The stored vectors (`vectors.npy`), read a few rows at a time without loading the file."""

    def __init__(self, path: Path):
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(handle)
                self._start = handle.tell()
            size = path.stat().st_size
        except FileNotFoundError:
            raise IndexDamaged(f"vectors file {path} is missing; run `rag build --full`") from None
        except (OSError, ValueError) as error:
            raise IndexDamaged(f"vectors file {path} is damaged ({error}); run `rag build --full`") from None
        if fortran or len(shape) != 2 or dtype != np.float32 or size != self._start + shape[0] * shape[1] * 4:
            raise IndexDamaged(
                f"vectors file {path} is damaged (truncated or not float32 rows); run `rag build --full`"
            )
        self.shape, self.dtype = shape, dtype
        self._row_bytes = shape[1] * dtype.itemsize
        self._file = RowFile(path)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        """The vectors of `rows` (a sequence of row numbers), one row per number, in that order."""
        rows = [int(r) for r in np.atleast_1d(rows)]
        if any(not 0 <= r < self.shape[0] for r in rows):
            raise IndexError(f"rows out of range 0..{self.shape[0] - 1}")
        data = b"".join(self._file.read(self._start + r * self._row_bytes, self._row_bytes) for r in rows)
        return np.frombuffer(data, dtype=self.dtype).reshape(len(rows), self.shape[1])

    def block(self, start: int, end: int) -> np.ndarray:
        """The vectors of rows `start` to `end` (exclusive), in one read."""
        if not 0 <= start <= end <= self.shape[0]:
            raise IndexError(f"rows {start}..{end} out of range 0..{self.shape[0]}")
        data = self._file.read(self._start + start * self._row_bytes, (end - start) * self._row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape(end - start, self.shape[1])

"""Everything on disk: FAISS, the passages file, and atomic swaps between index versions.

Layout of the index folder:
    CURRENT              name of the live version, replaced atomically
    v-<time>-<id>/       one complete build: manifest.json, passages.jsonl, vectors.npy,
                         index.faiss, bm25/, texts/ (the text of record of each PDF, Word
                         and HTML file by sha256: <sha256>.json and <sha256>.boxes.npy)
    .lock                held by the build that is running
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag import readers
from rag.errors import IndexDamaged, IndexMismatch, IndexMissing
from rag.lexical import LexicalIndex
from rag.manifest import FORMAT_VERSION, Manifest
from rag.records import Passage

POINTER = "CURRENT"
MANIFEST, PASSAGES, VECTORS, FAISS, BM25 = "manifest.json", "passages.jsonl", "vectors.npy", "index.faiss", "bm25"
OFFSETS = "passages.offsets.npy"
APPROXIMATE_ABOVE = 200_000
"""Exact search costs ~106 ms per million vectors per query here (bench/ann_recall.py), passing
20 ms near 190,000 passages; beyond this many an IVF index with 8-bit vectors is used."""
NPROBE = 64
"""IVF lists searched per query: IVF-SQ8 recall@10 0.972 on 51k real sentence vectors (0.951 at 32),
0.966 on 100k and 0.981 on 1M synthetic ones, for 0.3-1.5 ms per query on one core."""


def make_faiss(vectors: np.ndarray):
    """An inner-product index over unit vectors: exact while small, IVF-SQ8 beyond the threshold
    (a quarter of the memory of exact search, so a million passages serve in well under 2 GB)."""
    import faiss

    dimension = vectors.shape[1]
    if len(vectors) <= APPROXIMATE_ABOVE:
        index = faiss.IndexFlatIP(dimension)
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
    """A short name of the FAISS index type, for the manifest."""
    return "ivf-sq8" if "IVF" in type(index).__name__ else "flat"


class _RowFile:
    """A file read in small pieces with `pread`, closed when no longer referenced.

    A memory map would do the same, but every row read through one maps whole cached blocks of
    the file into the server: at 1M passages the ~30 rows of one question added ~50 MB of
    resident memory, and peak RSS passed 2.7 GB after 40 questions (bench/query_speed.py).
    """

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_RDONLY)

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def __del__(self):
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)


class PassageTable(Sequence):
    """The passages file, read one row at a time (1M passages stay on disk)."""

    def __init__(self, path: Path, offsets: np.ndarray):
        self._offsets = offsets
        self._file = _RowFile(path)

    def __len__(self) -> int:
        return max(0, len(self._offsets) - 1)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if not -len(self) <= row < len(self):
            raise IndexError(row)
        row %= len(self)
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        return Passage(**json.loads(self._file.read(start, end - start)))


class VectorRows:
    """The stored vectors (`vectors.npy`), read a few rows at a time without loading the file."""

    def __init__(self, path: Path):
        try:
            with open(path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read_header(handle)
                self._start = handle.tell()
            size = path.stat().st_size
        except FileNotFoundError:
            raise IndexDamaged(f"vectors file {path} is missing; run `rag build --full`") from None
        except (OSError, ValueError) as error:
            raise IndexDamaged(f"vectors file {path} is damaged ({error}); run `rag build --full`") from None
        if fortran or len(shape) != 2 or dtype != np.float32 or size != self._start + shape[0] * shape[1] * 4:
            raise IndexDamaged(f"vectors file {path} is damaged (truncated or not float32 rows); run `rag build --full`")
        self.shape, self.dtype = shape, dtype
        self._row_bytes = shape[1] * dtype.itemsize
        self._file = _RowFile(path)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        """The vectors of `rows` (a sequence of row numbers), one row per number, in that order."""
        rows = [int(r) for r in np.atleast_1d(rows)]
        if any(not 0 <= r < self.shape[0] for r in rows):
            raise IndexError(f"rows out of range 0..{self.shape[0] - 1}")
        data = b"".join(self._file.read(self._start + r * self._row_bytes, self._row_bytes) for r in rows)
        return np.frombuffer(data, dtype=self.dtype).reshape(len(rows), self.shape[1])


@dataclass
class LoadedIndex:
    """A checked index version, ready to search; passages, vectors and BM25 stay on disk."""

    folder: Path
    manifest: Manifest
    passages: Sequence[Passage]
    faiss: object
    lexical: LexicalIndex
    vectors: VectorRows
    """The stored vectors, read by row: exact cosines for BM25-only candidates (an IVF index
    cannot `reconstruct` without a direct map, and SQ8 codes would only approximate them)."""

    def search_dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top `k` (row, cosine) pairs for one unit query vector."""
        if not self.passages:
            return []
        k = min(k, len(self.passages))
        scores, rows = self.faiss.search(query_vector.reshape(1, -1).astype(np.float32), k)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_version(
    root: Path, manifest: Manifest, passages: list[Passage], vectors: np.ndarray, texts: dict | None = None
) -> Path:
    """Write a complete new version beside the live one and fsync it; the pointer is not touched.

    `texts` maps the sha256 of each converted file to the folder whose `texts/` holds its text of
    record: an older version or the build's scratch folder. It is hard-linked in, never converted again.
    """
    import faiss

    root.mkdir(parents=True, exist_ok=True)
    now = time.time_ns()  # names sort in build order, also within one second
    name = f"v-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now // 10**9))}-{now % 10**9:09d}-{uuid.uuid4().hex[:4]}"
    staging = root / f".tmp-{name}"
    staging.mkdir()
    offsets = np.zeros(len(passages) + 1, dtype=np.int64)
    with open(staging / PASSAGES, "wb") as handle:
        for row, passage in enumerate(passages):
            handle.write(json.dumps(passage.to_dict(), ensure_ascii=False).encode("utf-8") + b"\n")
            offsets[row + 1] = handle.tell()
    np.save(staging / OFFSETS, offsets)
    np.save(staging / VECTORS, vectors)
    index = make_faiss(vectors)
    faiss.write_index(index, str(staging / FAISS))
    LexicalIndex.build([p.text for p in passages]).save(staging / BM25)
    for sha, folder in (texts or {}).items():
        readers.link_record(folder, staging, sha)
    missing = [sha for sha in (texts or {}) if not readers.record_paths(staging, sha)[0].exists()]
    if missing:
        raise IndexDamaged(
            f"the stored text of {len(missing)} converted file(s) is missing from the previous index; run `rag build --full`"
        )
    manifest = _with_index_type(manifest, faiss_kind(index))
    (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    for path in staging.rglob("*"):
        if path.is_file():
            _fsync_file(path)
    _fsync_dir(staging / BM25)
    if (staging / readers.TEXTS).is_dir():
        _fsync_dir(staging / readers.TEXTS)
    _fsync_dir(staging)
    final = root / name
    os.rename(staging, final)
    _fsync_dir(root)
    return final


def _with_index_type(manifest: Manifest, kind: str) -> Manifest:
    from dataclasses import replace

    return replace(manifest, index_type=kind)


def publish(root: Path, version: Path) -> None:
    """Make `version` the live index in one atomic step (write, fsync, rename the pointer)."""
    tmp = root / f".{POINTER}.{uuid.uuid4().hex[:6]}"
    tmp.write_text(version.name + "\n", encoding="utf-8")
    _fsync_file(tmp)
    os.replace(tmp, root / POINTER)
    _fsync_dir(root)


def current_version(root: Path) -> Path | None:
    """The folder the pointer names, or None when nothing was built yet."""
    try:
        name = (Path(root) / POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise IndexDamaged(f"index pointer {Path(root) / POINTER} cannot be read ({error}); run `rag build --full`") from None
    if not name or "/" in name or name.startswith("."):
        raise IndexDamaged(f"index pointer {Path(root) / POINTER} is damaged; run `rag build --full`")
    return Path(root) / name


def collect_garbage(root: Path, keep: int = 2) -> None:
    """Remove unfinished staging folders and all but the newest `keep` versions (the live one stays)."""
    try:
        live = current_version(root)
    except IndexDamaged:
        live = None  # a damaged pointer must not stop the build that replaces it
    for path in Path(root).glob(".tmp-v-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in Path(root).glob(f".{POINTER}.*"):
        path.unlink(missing_ok=True)
    versions = sorted(p for p in Path(root).glob("v-*") if p.is_dir())
    for path in versions[:-keep]:
        if path != live:
            shutil.rmtree(path, ignore_errors=True)


def read_passages(folder: Path) -> PassageTable:
    """The passages of a version in row order, checked against their offsets, or IndexDamaged."""
    path = folder / PASSAGES
    try:
        offsets = np.load(folder / OFFSETS, mmap_mode="r")
        size = path.stat().st_size
    except FileNotFoundError as error:
        raise IndexDamaged(f"passages file {error.filename} is missing; run `rag build --full`") from None
    except (OSError, ValueError) as error:
        raise IndexDamaged(f"passage offsets in {folder} are damaged ({error}); run `rag build --full`") from None
    if offsets.ndim != 1 or len(offsets) == 0 or int(offsets[-1]) != size or int(offsets[0]) != 0:
        raise IndexDamaged(f"passages file {path} does not match its offsets (edited or truncated); run `rag build --full`")
    table = PassageTable(path, offsets)
    try:
        for row in {0, len(table) // 2, len(table) - 1} if len(table) else ():
            table[row]  # spot-check that rows parse
    except (ValueError, TypeError) as error:
        raise IndexDamaged(f"passages file {path} is damaged ({error}); run `rag build --full`") from None
    return table


def read_vectors(folder: Path, mmap: bool = True) -> np.ndarray:
    """The stored vectors of a version (memory-mapped by default)."""
    try:
        return np.load(folder / VECTORS, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as error:
        raise IndexDamaged(f"vectors file {folder / VECTORS} is damaged ({error}); run `rag build --full`") from None


def load(root: Path) -> LoadedIndex:
    """Load and check the live version: every file present and all of them the same length."""
    import faiss

    root = Path(root)
    folder = current_version(root)
    if folder is None:
        raise IndexMissing(f"no index in {root}; run `rag build` first")
    if not folder.is_dir():
        raise IndexDamaged(f"index version {folder} named by {root / POINTER} is missing; run `rag build --full`")
    manifest = Manifest.read(folder / MANIFEST)
    if manifest.format_version != FORMAT_VERSION:
        raise IndexMismatch(
            f"index in {folder} has format version {manifest.format_version}, this rag reads "
            f"{FORMAT_VERSION}; run `rag build --full`"
        )
    passages = read_passages(folder)
    try:
        index = faiss.read_index(str(folder / FAISS))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise IndexDamaged(f"FAISS file {folder / FAISS} is damaged ({first_line}); run `rag build --full`") from None
    if hasattr(index, "nprobe"):
        index.nprobe = NPROBE
    lexical = LexicalIndex.load(folder / BM25, len(passages))
    vectors = VectorRows(folder / VECTORS)
    counts = {"manifest": manifest.passages, "passages file": len(passages), "FAISS index": index.ntotal,
              "vectors file": len(vectors)}
    if len(set(counts.values())) != 1 or index.d != manifest.dimension:
        detail = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise IndexDamaged(
            f"index in {folder} is out of step ({detail}; dimension {index.d} vs {manifest.dimension}); "
            f"run `rag build --full`"
        )
    return LoadedIndex(folder, manifest, passages, index, lexical, vectors)

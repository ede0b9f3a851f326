"""One immutable segment of the index: some files' passages, their vectors, a FAISS index, BM25
postings, text keys and the texts of record of its converted files, written once, never changed.

A segment folder (`segments/s-<time>-<id>/`) holds:
    segment.json            name, passage count, dimension, FAISS type, and each file's rows
    passages.jsonl          one passage a line, read by row through passages.offsets.npy
    vectors.npy             float32 unit vectors, one row per passage
    index.faiss             exact inner product over half-precision copies, or IVF-SQ8 above APPROXIMATE_ABOVE passages
    terms/                  BM25 postings (rag.index.bm25.Postings)
    keys.npy                a 64-bit key of each passage's text: vectors are reused by text
    keys.order.npy          the rows in key order, for lookups
    texts/                  the text of record of each converted file, by sha256
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rag.errors import IndexDamaged
from rag.index.bm25 import Postings
from rag.index.disk import RowFile, fsync_dir, fsync_tree, new_name
from rag.index.vectors import APPROXIMATE_ABOVE, NPROBE, VectorRows, faiss_kind, make_faiss, search_threads
from rag.ingest import readers
from rag.types import Passage

INFO, PASSAGES, OFFSETS, VECTORS, FAISS, TERMS, KEYS, KEY_ORDER = (
    "segment.json",
    "passages.jsonl",
    "passages.offsets.npy",
    "vectors.npy",
    "index.faiss",
    "terms",
    "keys.npy",
    "keys.order.npy",
)


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """A 64-bit key per text (the first bytes of its SHA-1): where a stored vector may be reused."""
    return np.array(
        [int.from_bytes(hashlib.sha1(t.encode("utf-8")).digest()[:8], "little") for t in texts], dtype=np.uint64
    )


@dataclass(frozen=True)
class SegmentInfo:
    """What `segment.json` says: the segment's name and size, and the rows of each of its files."""

    name: str
    passages: int
    dimension: int
    index_type: str
    files: dict[str, list[int]]
    """source → [first row, end row): a file's passages are contiguous in its segment."""
    created: str = ""
    sizes: dict[str, int] = field(default_factory=dict)
    """Each file's size in bytes, by path inside the segment: checked at every open (a truncated
    or missing file is named at once, without reading it)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class PassageTable(Sequence):
    """The passages file, read one row at a time (1M passages stay on disk)."""

    def __init__(self, path: Path, offsets: np.ndarray):
        self._offsets = offsets
        self._file = RowFile(path)

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


def write_segment(
    folder: Path,
    passages: list[Passage],
    vectors: np.ndarray,
    texts: dict | None = None,
    approximate_above: int = APPROXIMATE_ABOVE,
) -> SegmentInfo:
    """Write a new segment under `folder` (the index's `segments/`) and fsync it; nothing points at it yet.

    `passages` come file by file; `texts` maps the sha256 of each converted file among them to the
    folder whose `texts/` holds its text of record (an older segment or the build's scratch folder).
    """
    import faiss

    name = new_name("s")
    staging = folder / f".tmp-{name}"
    staging.mkdir(parents=True)
    offsets = np.zeros(len(passages) + 1, dtype=np.int64)
    files: dict[str, list[int]] = {}
    with open(staging / PASSAGES, "wb") as handle:
        for row, passage in enumerate(passages):
            handle.write(json.dumps(passage.to_dict(), ensure_ascii=False).encode("utf-8") + b"\n")
            offsets[row + 1] = handle.tell()
            files.setdefault(passage.source, [row, row])[1] = row + 1
    np.save(staging / OFFSETS, offsets)
    np.save(staging / VECTORS, np.ascontiguousarray(vectors, dtype=np.float32))
    index = make_faiss(np.ascontiguousarray(vectors, dtype=np.float32), approximate_above)
    faiss.write_index(index, str(staging / FAISS))
    texts_of = [p.text for p in passages]
    Postings.build(texts_of).save(staging / TERMS)
    keys = text_keys(texts_of)
    np.save(staging / KEYS, keys)
    np.save(staging / KEY_ORDER, np.argsort(keys, kind="stable").astype(np.int64))
    for sha, source_folder in (texts or {}).items():
        readers.link_record(source_folder, staging, sha)
    missing = [sha for sha in (texts or {}) if not readers.record_paths(staging, sha)[0].exists()]
    if missing:
        raise IndexDamaged(
            f"the stored text of {len(missing)} converted file(s) is missing from the previous index; run `rag build --full`"
        )
    sizes = {p.relative_to(staging).as_posix(): p.stat().st_size for p in sorted(staging.rglob("*")) if p.is_file()}
    info = SegmentInfo(
        name,
        len(passages),
        int(vectors.shape[1]),
        faiss_kind(index),
        files,
        time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        sizes,
    )
    (staging / INFO).write_text(info.to_json(), encoding="utf-8")
    fsync_tree(staging)
    os.rename(staging, folder / name)
    fsync_dir(folder)
    return info


class Segment:
    """An opened segment. Passages and vectors stay on disk; FAISS and the postings load on first use."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.info = _read_info(self.folder)
        self._check_sizes()
        self.passages = _read_passages(self.folder)
        self.vectors = VectorRows(self.folder / VECTORS)
        self._lock = threading.Lock()
        self._faiss = self._postings = self._keys = None
        counts = {
            "segment.json": self.info.passages,
            "passages file": len(self.passages),
            "vectors file": len(self.vectors),
        }
        if len(set(counts.values())) != 1 or self.vectors.shape[1] != self.info.dimension:
            self._out_of_step(counts)
        if not (self.folder / KEYS).is_file():
            raise IndexDamaged(f"text keys {self.folder / KEYS} are missing; run `rag build --full`")

    @property
    def name(self) -> str:
        return self.info.name

    def _check_sizes(self) -> None:
        for name, size in self.info.sizes.items():
            path = self.folder / name
            try:
                found = path.stat().st_size
            except OSError:
                raise IndexDamaged(f"index file {path} is missing; run `rag build --full`") from None
            if found != size:
                raise IndexDamaged(
                    f"index file {path} is damaged ({found:,} bytes, written as {size:,}); run `rag build --full`"
                )

    def _out_of_step(self, counts: dict) -> None:
        detail = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise IndexDamaged(f"index segment {self.folder} is out of step ({detail}); run `rag build --full`")

    def open_search(self) -> None:
        """Load FAISS and the BM25 postings now (a server does this before it switches versions)."""
        self.faiss, self.postings  # noqa: B018 - loading is the point

    @property
    def faiss(self):
        with self._lock:
            if self._faiss is None:
                self._faiss = self._read_faiss()
            return self._faiss

    def _read_faiss(self):
        import faiss

        path = self.folder / FAISS
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
            raise IndexDamaged(f"FAISS file {path} is damaged ({first_line}); run `rag build --full`") from None
        if hasattr(index, "nprobe"):
            index.nprobe = NPROBE
        if index.ntotal != self.info.passages or index.d != self.info.dimension:
            self._out_of_step({"segment.json": self.info.passages, "FAISS index": index.ntotal})
        return index

    @property
    def postings(self) -> Postings:
        with self._lock:
            if self._postings is None:
                self._postings = Postings.load(self.folder / TERMS, self.info.passages)
            return self._postings

    def keys(self) -> np.ndarray:
        """The text key of every row."""
        return self._key_index()[0]

    def _key_index(self) -> tuple[np.ndarray, np.ndarray]:
        """The text keys by row and the rows in key order (memory-mapped)."""
        with self._lock:
            if self._keys is None:
                try:
                    keys, order = (
                        np.load(self.folder / KEYS, mmap_mode="r"),
                        np.load(self.folder / KEY_ORDER, mmap_mode="r"),
                    )
                except (OSError, ValueError) as error:
                    raise IndexDamaged(
                        f"text keys in {self.folder} are damaged ({error}); run `rag build --full`"
                    ) from None
                if keys.shape != (self.info.passages,) or order.shape != keys.shape:
                    self._out_of_step({"segment.json": self.info.passages, "text keys": len(keys)})
                self._keys = (keys, order)
            return self._keys

    def rows_with(self, keys: np.ndarray) -> np.ndarray:
        """For each key, a row of this segment whose text has it, or -1."""
        stored, order = self._key_index()
        if not len(stored):
            return np.full(len(keys), -1, dtype=np.int64)
        return np.array([self._row_with(stored, order, key) for key in keys.tolist()], dtype=np.int64)

    @staticmethod
    def _row_with(stored: np.ndarray, order: np.ndarray, key: int) -> int:
        """Binary search of the key-ordered rows (a few page reads of the memory map, not a sort)."""
        low, high = 0, len(order)
        while low < high:
            middle = (low + high) // 2
            if int(stored[order[middle]]) < key:
                low = middle + 1
            else:
                high = middle
        return int(order[low]) if low < len(order) and int(stored[order[low]]) == key else -1

    def search(self, query_vector: np.ndarray, k: int, live_bitmap: np.ndarray | None) -> list[tuple[int, float]]:
        """Top `k` (row, cosine) pairs among the rows `live_bitmap` lets through (all when None)."""
        import faiss

        index = self.faiss
        k = min(k, index.ntotal)
        if k < 1:
            return []
        query = query_vector.reshape(1, -1).astype(np.float32)
        with search_threads():
            if live_bitmap is None:
                scores, rows = index.search(query, k)
            else:
                selector = faiss.IDSelectorBitmap(index.ntotal, faiss.swig_ptr(live_bitmap))
                params = (
                    faiss.SearchParametersIVF(sel=selector, nprobe=NPROBE)
                    if hasattr(index, "nprobe")
                    else faiss.SearchParameters(sel=selector)
                )
                scores, rows = index.search(query, k, params=params)
        found = [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]
        if self.info.index_type == "flat-fp16" and found:  # the float32 cosines of the rows the scan found
            exact = self.vectors[[r for r, _ in found]] @ query[0]
            found = sorted(zip((r for r, _ in found), exact.tolist()), key=lambda pair: -pair[1])
        return found


def _read_info(folder: Path) -> SegmentInfo:
    path = folder / INFO
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return SegmentInfo(**raw)
    except FileNotFoundError:
        raise IndexDamaged(f"index segment {folder} is missing or incomplete; run `rag build --full`") from None
    except (ValueError, TypeError, OSError) as error:
        raise IndexDamaged(f"segment file {path} is damaged ({error}); run `rag build --full`") from None


def _read_passages(folder: Path) -> PassageTable:
    """The passages of a segment in row order, checked against their offsets, or IndexDamaged."""
    path = folder / PASSAGES
    try:
        offsets = np.load(folder / OFFSETS, mmap_mode="r")
        size = path.stat().st_size
    except FileNotFoundError as error:
        raise IndexDamaged(f"passages file {error.filename} is missing; run `rag build --full`") from None
    except (OSError, ValueError) as error:
        raise IndexDamaged(f"passage offsets in {folder} are damaged ({error}); run `rag build --full`") from None
    if offsets.ndim != 1 or len(offsets) == 0 or int(offsets[-1]) != size or int(offsets[0]) != 0:
        raise IndexDamaged(
            f"passages file {path} does not match its offsets (edited or truncated); run `rag build --full`"
        )
    table = PassageTable(path, offsets)
    try:
        for row in {0, len(table) // 2, len(table) - 1} if len(table) else ():
            table[row]  # spot-check that rows parse
    except (ValueError, TypeError) as error:
        raise IndexDamaged(f"passages file {path} is damaged ({error}); run `rag build --full`") from None
    return table

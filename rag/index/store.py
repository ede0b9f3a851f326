"""The index on disk: versions made of immutable segments, atomic swaps between them, and clean-up.

Layout of the index folder:
    CURRENT              name of the live version, replaced atomically
    v-<time>-<id>/       one version: manifest.json alone (the recipe, every file and its segment,
                         the live segments and the files deleted from each)
    segments/s-<...>/    immutable segments (rag/index/segment.py), shared by the versions that list them
    .lock                held by the build that is running

A build writes new segments and a new manifest, never touching what a reader may be using. A
process that loads a version holds a shared lock on its manifest until it lets the version go, and
clean-up removes only versions nobody holds and segments no kept version lists.
"""

from __future__ import annotations

import bisect
import fcntl
import functools
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.errors import IndexDamaged, IndexMismatch, IndexMissing
from rag.index.bm25 import LexicalIndex
from rag.index.manifest import FORMAT_VERSION, Manifest
from rag.index.segment import Segment, fsync_dir, fsync_file, new_name
from rag.types import Passage

POINTER, MANIFEST, SEGMENTS = "CURRENT", "manifest.json", "segments"


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


class _Hold:
    """A shared lock on a version's manifest: clean-up leaves the version alone while it is held."""

    def __init__(self, folder: Path):
        self._handle = open(folder / MANIFEST, "rb")
        fcntl.flock(self._handle, fcntl.LOCK_SH)

    def release(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None:
            handle.close()

    def __del__(self):
        self.release()


@dataclass
class LoadedIndex:
    """A checked index version, ready to search: its segments' live passages numbered as one index."""

    root: Path
    folder: Path
    manifest: Manifest
    parts: list[Part]
    passages: LivePassages = field(init=False)
    vectors: LiveVectors = field(init=False)
    """The stored vectors by row: exact cosines for BM25-only candidates (an IVF index cannot
    `reconstruct` without a direct map, and SQ8 codes would only approximate them)."""
    hold: _Hold | None = None

    def __post_init__(self):
        base = 0
        for part in self.parts:
            part.base, base = base, base + part.live
        self.passages = LivePassages(self.parts)
        self.vectors = LiveVectors(self.passages, self.manifest.dimension)

    @functools.cached_property
    def lexical(self) -> LexicalIndex:
        """BM25 over the live passages of every segment (postings read on first use)."""
        return LexicalIndex(self.parts, len(self.passages))

    def search_dense(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top `k` (row, cosine) pairs for one unit query vector, over every segment's live rows; equal
        cosines at the cut are settled by `order_keys`, so the result does not depend on segmentation."""
        asked = k + 1  # one more than kept: a tie across the cut shows
        while True:
            found = []
            for part in self.parts:
                if part.live:
                    pairs = part.segment.search(query_vector, min(asked, part.live), part.live_bitmap)
                    if pairs:
                        rows = part.global_rows(np.array([r for r, _ in pairs]))
                        found.append((list(zip(rows.tolist(), (s for _, s in pairs))), len(pairs) < part.live))
            merged = [pair for pairs, _ in found for pair in pairs]
            if len(merged) <= k:
                break
            last = sorted(score for _, score in merged)[-k]
            cut_short = any(more and pairs[-1][1] == last for pairs, more in found)
            if not cut_short or asked >= max(p.live for p in self.parts):
                break
            asked *= 4  # a part may hold more rows tied with the last one kept
        return settle_ties(merged, self.passages, k)

    def part_of(self, source: str) -> Part | None:
        """The part whose segment holds `source`'s live passages."""
        entry = self.manifest.files.get(source)
        return next((p for p in self.parts if entry is not None and p.segment.name == entry.segment), None)

    def texts_folder(self, source: str) -> Path:
        """The folder whose `texts/` holds `source`'s text of record (its segment)."""
        part = self.part_of(source)
        return part.segment.folder if part is not None else self.folder

    @functools.cached_property
    def _converted(self) -> dict[str, str]:
        """sha256 → a source with those bytes, for the converted files (PDF, Word, HTML)."""
        return {e.sha256: s for s, e in reversed(self.manifest.files.items()) if e.kind != "text"}

    def record_folder(self, sha256: str) -> Path | None:
        """The segment folder holding the text of record of a converted file with these bytes, if any."""
        source = self._converted.get(sha256)
        return self.texts_folder(source) if source is not None else None

    def file_passages(self, source: str) -> list[Passage]:
        """The passages of one indexed file, in order."""
        part = self.part_of(source)
        if part is None:
            return []
        start, end = part.segment.info.files.get(source, (0, 0))
        return [part.segment.passages[row] for row in range(start, end)]

    def release(self) -> None:
        """Let clean-up remove this version once nobody else holds it."""
        if self.hold is not None:
            self.hold.release()


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


def write_version(root: Path, manifest: Manifest) -> Path:
    """Write a new version (its manifest) beside the live one and fsync it; the pointer is not touched.
    The segments it lists must be written already."""
    root.mkdir(parents=True, exist_ok=True)
    name = new_name("v")
    staging = root / f".tmp-{name}"
    staging.mkdir()
    (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    fsync_file(staging / MANIFEST)
    fsync_dir(staging)
    final = root / name
    os.rename(staging, final)
    fsync_dir(root)
    return final


def segments_folder(root: Path) -> Path:
    """Where the index's segments live (made on first use)."""
    folder = Path(root) / SEGMENTS
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def publish(root: Path, version: Path) -> None:
    """Make `version` the live index in one atomic step (write, fsync, rename the pointer)."""
    tmp = root / f".{POINTER}.{uuid.uuid4().hex[:6]}"
    tmp.write_text(version.name + "\n", encoding="utf-8")
    fsync_file(tmp)
    os.replace(tmp, root / POINTER)
    fsync_dir(root)


def current_version(root: Path) -> Path | None:
    """The folder the pointer names, or None when nothing was built yet."""
    try:
        name = (Path(root) / POINTER).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise IndexDamaged(
            f"index pointer {Path(root) / POINTER} cannot be read ({error}); run `rag build --full`"
        ) from None
    if not name or "/" in name or name.startswith("."):
        raise IndexDamaged(f"index pointer {Path(root) / POINTER} is damaged; run `rag build --full`")
    return Path(root) / name


def collect_garbage(root: Path) -> None:
    """Remove unfinished writes, every version but the live one and those a reader holds, and the
    segments no remaining version lists."""
    root = Path(root)
    try:
        live = current_version(root)
    except IndexDamaged:
        live = None  # a damaged pointer must not stop the build that replaces it
    for path in [*root.glob(".tmp-v-*"), *root.glob(f"{SEGMENTS}/.tmp-*")]:
        shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(f".{POINTER}.*"):
        path.unlink(missing_ok=True)
    kept = []
    for path in sorted(p for p in root.glob("v-*") if p.is_dir()):
        if path == live or _held(path):
            kept.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    listed = set()
    for path in kept:
        try:
            listed.update(s.name for s in Manifest.read(path / MANIFEST).segments)
        except IndexDamaged:
            return  # a kept version we cannot read: remove no segment it might list
    for path in root.glob(f"{SEGMENTS}/s-*"):
        if path.name not in listed:
            shutil.rmtree(path, ignore_errors=True)


def _held(version: Path) -> bool:
    """True while some process holds `version` loaded (a shared lock on its manifest)."""
    try:
        handle = open(version / MANIFEST, "rb")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def load(root: Path, reuse: LoadedIndex | None = None, search: bool = True) -> LoadedIndex:
    """Load and check the live version: its manifest, every segment it lists, and their counts.

    Segments already open in `reuse` (the version loaded before) are taken from it, so following a
    small edit opens only the new segment. `search=False` leaves FAISS and BM25 unread (a build).
    """
    root = Path(root)
    for _ in range(3):
        folder = current_version(root)
        if folder is None:
            raise IndexMissing(f"no index in {root}; run `rag build` first")
        try:
            return _load_version(root, folder, reuse, search)
        except _Vanished:
            continue  # a build replaced the version and removed it between the pointer and the lock
    raise IndexDamaged(f"index version {folder} named by {root / POINTER} is missing; run `rag build --full`")


class _Vanished(Exception):
    pass


def _load_version(root: Path, folder: Path, reuse: LoadedIndex | None, search: bool) -> LoadedIndex:
    if not folder.is_dir():
        if current_version(root) != folder:
            raise _Vanished
        raise IndexDamaged(f"index version {folder} named by {root / POINTER} is missing; run `rag build --full`")
    manifest = Manifest.read(folder / MANIFEST)
    if manifest.format_version != FORMAT_VERSION:
        raise IndexMismatch(
            f"index in {folder} has format version {manifest.format_version}, this rag reads "
            f"{FORMAT_VERSION}; run `rag build --full`"
        )
    try:
        hold = _Hold(folder)
    except FileNotFoundError:
        raise _Vanished from None
    opened = {part.segment.name: part.segment for part in (reuse.parts if reuse else ())}
    parts = []
    for entry in manifest.segments:
        try:
            segment = opened.get(entry.name) or Segment(root / SEGMENTS / entry.name)
        except IndexDamaged:
            if not (folder / MANIFEST).exists():
                raise _Vanished from None  # cleaned up just before our lock: the pointer has moved on
            raise
        if segment.info.dimension != manifest.dimension:
            raise IndexDamaged(
                f"index segment {segment.folder} has dimension {segment.info.dimension}, the "
                f"manifest {manifest.dimension}; run `rag build --full`"
            )
        if search:
            segment.open_search()
        parts.append(Part(segment, entry.deleted))
    loaded = LoadedIndex(root, folder, manifest, parts, hold=hold)
    if search:
        loaded.lexical  # noqa: B018 - its statistics now, not on the first question
    if len(loaded.passages) != manifest.passages:
        raise IndexDamaged(
            f"index in {folder} is out of step (manifest {manifest.passages} passages, segments "
            f"{len(loaded.passages)}); run `rag build --full`"
        )
    return loaded

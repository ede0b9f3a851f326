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

import fcntl
import functools
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.errors import IndexDamaged, IndexMismatch, IndexMissing
from rag.index import kept
from rag.index.bm25 import LexicalIndex
from rag.index.disk import fsync_dir, fsync_file, new_name
from rag.index.live import LivePassages, LiveVectors, Part, settle_ties
from rag.index.manifest import FORMAT_VERSION, Manifest
from rag.index.segment import Segment
from rag.types import Passage

POINTER, MANIFEST, SEGMENTS = "CURRENT", "manifest.json", "segments"


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

    def search_dense(
        self, query_vector: np.ndarray, k: int, sources: frozenset[str] | None = None
    ) -> list[tuple[int, float]]:
        """Top `k` (row, cosine) pairs for one unit query vector, over every segment's live rows (of `sources` alone
        when given: the filter is FAISS's own, so the top rows are the best ones in scope); equal cosines at the
        cut are settled by `order_keys`, so the result does not depend on segmentation."""
        asked = k + 1  # one more than kept: a tie across the cut shows
        while True:
            found = []
            for part in self.parts:
                bitmap, live = part.live_bitmap, part.live
                if sources is not None:
                    bitmap, live = part.bitmap_of(sources)
                if live:
                    pairs = part.segment.search(query_vector, min(asked, live), bitmap)
                    if pairs:
                        rows = part.global_rows(np.array([r for r, _ in pairs]))
                        found.append((list(zip(rows.tolist(), (s for _, s in pairs))), len(pairs) < live))
            merged = [pair for pairs, _ in found for pair in pairs]
            if len(merged) <= k:
                break
            last = sorted(score for _, score in merged)[-k]
            cut_short = any(more and pairs[-1][1] == last for pairs, more in found)
            if not cut_short or asked >= max(p.live for p in self.parts):
                break
            asked *= 4  # a part may hold more rows tied with the last one kept
        return settle_ties(merged, self.passages, k)

    def rows_of(self, sources: frozenset[str]) -> np.ndarray:
        """A mask over this version's rows: True for the passages of `sources` (kept for the next question)."""
        cache = self.__dict__.setdefault("_rows_of", {})
        if sources in cache:
            return cache[sources]
        if len(cache) > 32:
            cache.clear()
        mask = cache[sources] = np.zeros(len(self.passages), dtype=bool)
        for source in sources:
            part = self.part_of(source)
            if part is not None:
                start, end = part.segment.info.files.get(source, (0, 0))
                mask[part.global_rows(np.arange(start, end))] = True
        return mask

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
    segments and kept documents no remaining version lists."""
    root = Path(root)
    try:
        live = current_version(root)
    except IndexDamaged:
        live = None  # a damaged pointer must not stop the build that replaces it
    for path in [*root.glob(".tmp-v-*"), *root.glob(f"{SEGMENTS}/.tmp-*")]:
        shutil.rmtree(path, ignore_errors=True)
    for path in root.glob(f".{POINTER}.*"):
        path.unlink(missing_ok=True)
    remaining = []
    for path in sorted(p for p in root.glob("v-*") if p.is_dir()):
        if path == live or _held(path):
            remaining.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    listed, documents = set(), set()
    for path in remaining:
        try:
            manifest = Manifest.read(path / MANIFEST)
        except IndexDamaged:
            return  # a kept version we cannot read: remove no segment it might list
        listed.update(s.name for s in manifest.segments)
        documents.update(entry.sha256 for entry in manifest.files.values())
    for path in root.glob(f"{SEGMENTS}/s-*"):
        if path.name not in listed:
            shutil.rmtree(path, ignore_errors=True)
    kept.collect(root, documents)


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

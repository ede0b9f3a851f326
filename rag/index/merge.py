"""Merging segments: small ones into larger ones by size tier, and mostly-deleted ones rewritten,
so an index edited many times stays as fast to search and as small on disk as a fresh one.

A merge reads the live rows of a few segments (no embedding), writes them as one new segment, and
publishes a version that lists it in their place, exactly as a build publishes: a reader keeps the
version it holds, and a crash leaves the last published version.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.index import store
from rag.index.manifest import Manifest, SegmentEntry
from rag.index.segment import write_segment

FLOOR = 1_000
"""Segments with fewer live passages than this all share the lowest tier."""
EXPUNGE_SHARE = 0.3
"""A segment with at least this share of its rows deleted is rewritten without them."""


def tier(live: int, factor: int) -> int:
    """The size tier of a segment with `live` passages: 0 below FLOOR, then one per `factor` times more."""
    return 0 if live < FLOOR else 1 + int(math.log(live / FLOOR, factor) + 1e-9)


def plan(parts: list[store.Part], factor: int) -> list[list[str]]:
    """Groups of segment names to merge: every tier holding `factor` or more segments, and each
    segment that is mostly deleted (alone, unless its tier is merged anyway)."""
    tiers: dict[int, list[store.Part]] = {}
    for part in parts:
        tiers.setdefault(tier(part.live, factor), []).append(part)
    groups = [[p.segment.name for p in members] for members in tiers.values() if len(members) >= factor]
    grouped = {name for group in groups for name in group}
    for part in parts:
        size = part.segment.info.passages
        if part.segment.name not in grouped and size and (size - part.live) / size >= EXPUNGE_SHARE:
            groups.append([part.segment.name])
    return groups


def merge_segments(loaded: store.LoadedIndex, names: list[str], exact_up_to: int) -> Manifest:
    """Write the live rows of the segments `names` as one new segment; the manifest that lists it in
    their place (not yet published)."""
    parts = [p for p in loaded.parts if p.segment.name in names]
    passages, vectors, texts = [], [], {}
    for part in parts:
        segment = part.segment
        for source, (start, end) in sorted(segment.info.files.items(), key=lambda item: item[1][0]):
            if source in part.deleted:
                continue
            passages.extend(segment.passages[row] for row in range(start, end))
            vectors.append(segment.vectors.block(start, end))
            entry = loaded.manifest.files.get(source)
            if entry is not None and entry.kind != "text":
                texts[entry.sha256] = segment.folder
    dimension = loaded.manifest.dimension
    info = write_segment(
        store.segments_folder(loaded.root),
        passages,
        np.vstack(vectors) if vectors else np.zeros((0, dimension), np.float32),
        texts,
        exact_up_to,
    )
    moved = set(info.files)
    entries, placed = [], False
    for entry in loaded.manifest.segments:
        if entry.name not in names:
            entries.append(entry)
        elif not placed:
            entries.append(SegmentEntry(info.name))
            placed = True
    files = {s: replace(e, segment=info.name) if s in moved else e for s, e in loaded.manifest.files.items()}
    kinds = {p.segment.info.index_type for p in loaded.parts if p.segment.name not in names} | {info.index_type}
    manifest = replace(loaded.manifest, segments=tuple(entries), files=files, index_type="+".join(sorted(kinds)))
    return manifest


def tidy(root: Path, factor: int, exact_up_to: int, say: Callable[[str], None]) -> int:
    """Merge until the policy asks for nothing more, publishing after each merge; the merges made.
    The caller holds the build lock."""
    merges = 0
    while True:
        loaded = store.load(root, search=False)
        groups = plan(loaded.parts, factor)
        if not groups:
            loaded.release()
            return merges
        names = groups[0]
        say(f"merging {len(names)} segment{'s' if len(names) != 1 else ''}")
        manifest = merge_segments(loaded, names, exact_up_to)
        loaded.release()
        store.publish(root, store.write_version(root, manifest))
        merges += 1

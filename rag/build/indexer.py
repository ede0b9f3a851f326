"""Build and update the index: only what changed is embedded, and the live index is never at risk."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rag.build import reuse
from rag.build.conversion import convert, known_unreadable, read_converted
from rag.build.lock import build_lock
from rag.build.summary import BuildSummary
from rag.config import Settings
from rag.embed.arithmetic import Arithmetic, for_build, vector_recipe
from rag.embed.embedder import Embedder, load_embedder
from rag.errors import IndexMissing, RagError
from rag.index import merge, store
from rag.index.manifest import SPLITTER, CorpusChanges, FileEntry, Manifest, SegmentEntry, diff, recipe
from rag.index.segment import write_segment
from rag.ingest import readers
from rag.ingest.corpus import CorpusScan, Known, scan
from rag.types import Document, Passage

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _previous(root: Path, settings: Settings, full: bool) -> tuple[store.LoadedIndex | None, str, Arithmetic, bool]:
    """The live index if it can be extended, else None and why a full build is needed; the arithmetic; and
    whether every file must be cut again (the splitter changed, nothing else: stored vectors are reused by text)."""
    if full:
        return None, "--full asked for", _arithmetic(settings, None)[0], False
    try:
        previous = store.load(root, search=False)
    except IndexMissing:
        return None, "", _arithmetic(settings, None)[0], False
    except RagError as error:
        return None, f"previous index unusable ({error})", _arithmetic(settings, None)[0], False
    manifest = previous.manifest
    if manifest.splitter != SPLITTER:
        arithmetic, mismatches = _arithmetic(settings, replace(manifest, splitter=SPLITTER))
        if not mismatches:
            why = (
                f"the sentence splitter changed (index {manifest.splitter}, this rag {SPLITTER}): every file is "
                "cut again and only passages whose text changed are embedded"
            )
            return previous, why, arithmetic, True
    arithmetic, mismatches = _arithmetic(settings, manifest)
    if mismatches:
        previous.release()
        return None, "settings changed: " + "; ".join(mismatches), arithmetic, False
    return previous, "", arithmetic, False


def _arithmetic(settings: Settings, manifest: Manifest | None) -> tuple[Arithmetic, list[str]]:
    """The arithmetic a build embeds in (the index's own while it can be extended), and what stops
    the index in `manifest` from being extended."""
    if manifest is None:
        return for_build(settings.precision)
    arithmetic, kept_apart = for_build(settings.precision, manifest.precision, manifest.int8_recipe)
    mismatches = manifest.mismatches(recipe(settings)) + kept_apart
    return (for_build(settings.precision)[0] if mismatches else arithmetic), mismatches


def planned_arithmetic(settings: Settings, full: bool = False) -> Arithmetic:
    """The arithmetic `build(settings, full)` will embed in, read from the live manifest alone (no
    model, no index load): what a cluster build's actors must use."""
    try:
        manifest = None if full else Manifest.read(store.current_version(settings.index) / store.MANIFEST)
    except (RagError, TypeError):
        manifest = None
    return _arithmetic(settings, manifest)[0]


def build(
    settings: Settings,
    full: bool = False,
    embedder_factory: Callable[[str], Embedder] | None = None,
    progress: Progress | None = None,
    scanner: Callable[..., CorpusScan] = scan,
    converter: Callable[..., tuple[dict, float]] | None = None,
) -> BuildSummary:
    """Bring the index in `settings.index` up to date with `settings.corpus`, atomically.

    Only what changed is written: new and changed files go into one new segment, the files they
    replace are marked deleted in the new version, and small segments are then merged by size tier.
    The model is rag's own in the arithmetic RAG_PRECISION asks for unless `embedder_factory` is given;
    `embedder_factory`, `scanner` and `converter` (`read_converted`'s shape) are where a cluster
    build plugs in (rag/cluster/build.py): the embedder is asked only for the passages whose
    vectors are not reused, the converter only for files whose text of record is not stored.
    """
    started = time.perf_counter()
    say = progress or (lambda message: log.info(message))
    root = Path(settings.index)
    with build_lock(root, settings.lock_timeout):
        store.collect_garbage(root)
        previous, reason, arithmetic, recut = _previous(root, settings, full)
        try:
            say(f"reading {settings.corpus}")
            scanned_ns = time.time_ns()
            known = Known.of(previous.manifest) if previous else None
            found = scanner(settings.corpus, settings.extensions, settings.max_file_bytes, known=known)
            factory = embedder_factory or (lambda name: load_embedder(name, arithmetic.precision))
            reread = _older_readers(previous, found)
            if reread and not reason:
                reason = (
                    f"texts of record from an older {', '.join(reread)} reader: those files are read again "
                    "and only passages whose text changed are embedded"
                )
            found, still_unreadable = known_unreadable(found, previous.manifest if previous else None, reread)
            changes = diff(previous.manifest.files if previous else {}, found.documents)
            if previous and not changes.any and not recut and not reread:
                skipped = {s.source: s.reason for s in found.skipped}
                return BuildSummary(
                    files_unchanged=len(changes.unchanged),
                    files_skipped=len(skipped),
                    skipped=skipped,
                    not_read=found.not_read,
                    passages=len(previous.passages),
                    seconds=time.perf_counter() - started,
                )
            scratch = (
                root / f".tmp-v-texts-{os.getpid()}-{time.time_ns()}"
            )  # removed by the next build if this one dies
            try:
                run = _Run(
                    settings,
                    previous,
                    reason,
                    arithmetic,
                    scratch,
                    factory,
                    say,
                    scanned_ns,
                    converter or read_converted,
                    recut,
                    reread,
                )
                summary = _build_changed(run, found, still_unreadable)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        finally:
            if previous is not None:
                previous.release()
        merges = merge.tidy(root, settings.merge_factor, settings.exact_up_to, say)
        store.collect_garbage(root)
        live = store.current_version(root)
        return replace(
            summary,
            merges=merges,
            segments=len(Manifest.read(live / store.MANIFEST).segments),
            version=live.name,
            seconds=time.perf_counter() - started,
        )


@dataclass(frozen=True)
class _Run:
    """What one build works with, settled before anything is written (the caller holds the lock)."""

    settings: Settings
    previous: store.LoadedIndex | None
    reason: str
    """Why the build starts from nothing, "" when it extends `previous`."""
    arithmetic: Arithmetic
    scratch: Path
    """Where converted texts of record wait until the segment takes them."""
    embedder_factory: Callable[[str], Embedder]
    say: Progress
    scanned_ns: int
    converter: Callable[..., tuple[dict, float]]
    recut: bool = False
    """Every file is cut again (the splitter changed): nothing counts as unchanged or renamed."""
    reread: frozenset[str] = frozenset()
    """Converted kinds whose stored texts an older reader wrote: their files are read and cut again."""

    @property
    def root(self) -> Path:
        return Path(self.settings.index)

    @property
    def old_files(self) -> dict[str, FileEntry]:
        return self.previous.manifest.files if self.previous else {}


def _build_changed(run: _Run, found: CorpusScan, still_unreadable: dict[str, str]) -> BuildSummary:
    """Convert what changed, embed what is new, write it as one segment and publish a version that lists it."""
    found, unreadable, conversion = convert(
        found, run.previous, run.settings, run.say, run.scratch, run.converter, run.reread
    )
    unreadable.update(still_unreadable)
    changes = diff(run.old_files, found.documents)
    if run.recut or run.reread:
        kinds = {d.source: d.kind for d in found.documents}
        again = {s for s in [*changes.unchanged, *changes.renamed] if run.recut or kinds.get(s) in run.reread}
        renamed = {new: old for new, old in changes.renamed.items() if new not in again}
        changes = CorpusChanges(
            added=sorted({*changes.added, *(new for new in changes.renamed if new in again)}),
            changed=sorted({*changes.changed, *(s for s in changes.unchanged if s in again)}),
            removed=sorted({*changes.removed, *(old for new, old in changes.renamed.items() if new in again)}),
            unchanged=[s for s in changes.unchanged if s not in again],
            renamed=renamed,
        )
    written = _written(run, changes, found)
    to_write = [d for d in found.documents if d.source in written]
    passages, vectors, embedded = reuse.assemble(
        to_write, run.previous, changes.renamed, run.settings, run.embedder_factory, run.say
    )
    segment = _write_segment(run, to_write, passages, vectors)
    manifest = _manifest(run, found, changes, written, segment, vectors.shape[1], embedded, unreadable)
    version = store.write_version(run.root, manifest)
    store.publish(run.root, version)
    removed = reuse.removed(
        run.previous, set(changes.changed) | set(changes.removed), passages
    )  # a rename removes none
    return BuildSummary(
        files_added=len(changes.added),
        files_changed=len(changes.changed),
        files_removed=len(changes.removed),
        files_renamed=len(changes.renamed),
        files_unchanged=len(changes.unchanged),
        files_skipped=len(manifest.skipped),
        skipped=manifest.skipped,
        not_read=manifest.not_read,
        files_converted=conversion[0],
        conversion_seconds=round(conversion[1], 3),
        passages=manifest.passages,
        passages_embedded=embedded,
        passages_reused=manifest.passages - embedded,
        passages_removed=removed,
        full=run.previous is None,
        reason=run.reason,
        version=version.name,
        precision=manifest.precision,
        arithmetic=manifest.arithmetic,
    )


def _older_readers(previous, found: CorpusScan) -> frozenset[str]:
    """The converted kinds among the corpus's files whose stored texts of record an older reader wrote."""
    if previous is None:
        return frozenset()
    return frozenset(readers.stale_kinds(previous.manifest.readers, {d.kind for d in found.documents}))


def _written(run: _Run, changes: CorpusChanges, found: CorpusScan) -> set[str]:
    """The files whose passages go into the new segment: all of them in a full build, else the new,
    changed and renamed ones."""
    if run.previous is None:
        return {d.source for d in found.documents}
    return set(changes.added) | set(changes.changed) | set(changes.renamed)


def _write_segment(run: _Run, documents: list[Document], passages: list[Passage], vectors: np.ndarray):
    """The new segment of these passages and their converted files' texts of record, or None when there are none."""
    if not passages:
        return None
    texts = {
        d.sha256: run.scratch if d.record is not None else run.previous.record_folder(d.sha256)
        for d in documents
        if d.kind != "text"
    }
    run.say(f"writing {len(passages)} passages")
    return write_segment(store.segments_folder(run.root), passages, vectors, texts, run.settings.exact_up_to)


def _manifest(
    run: _Run,
    found: CorpusScan,
    changes: CorpusChanges,
    written: set[str],
    segment,
    dimension: int,
    embedded: int,
    unreadable: dict[str, str],
) -> Manifest:
    """The new version's manifest: every file with its segment, the live segments with their deletions, and the
    arithmetic of the vectors (the previous version's when nothing was embedded)."""
    previous, settings = run.previous, run.settings
    replaced = set(changes.changed) | set(changes.removed) | set(changes.renamed.values())
    segments = _live_segments(previous, replaced) + ([SegmentEntry(segment.name)] if segment else [])
    per_file = {source: end - start for source, (start, end) in segment.files.items()} if segment else {}
    files = {}
    for d in found.documents:
        old = run.old_files.get(d.source)
        count, home = (
            (per_file.get(d.source, 0), segment.name if segment else "")
            if d.source in written
            else (old.passages, old.segment)
        )
        files[d.source] = FileEntry(d.sha256, d.encoding, count, d.kind, d.size, d.mtime_ns, home)
    live = {e.name for e in segments}
    kinds = {p.segment.info.index_type for p in previous.parts if p.segment.name in live} if previous else set()
    if previous is not None and not embedded:  # nothing embedded: the vectors are as they were
        precision, why, int8_recipe = (
            previous.manifest.precision,
            previous.manifest.arithmetic,
            previous.manifest.int8_recipe,
        )
    else:
        precision, why = run.arithmetic.precision, run.arithmetic.describe()
        int8_recipe = vector_recipe(precision)
    return Manifest(
        model=settings.model,
        dimension=dimension,
        max_tokens=settings.max_tokens,
        overlap=settings.overlap,
        files=files,
        passages=sum(entry.passages for entry in files.values()),
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        index_type="+".join(sorted(kinds | ({segment.index_type} if segment else set()))) or "flat-fp16",
        skipped={s.source: s.reason for s in found.skipped},
        unreadable=unreadable,
        not_read=found.not_read,
        readers=readers.reader_versions(),
        tokenizer=recipe(settings)["tokenizer"],
        precision=precision,
        arithmetic=why,
        int8_recipe=int8_recipe,
        segments=tuple(segments),
        scanned_ns=run.scanned_ns,
    )


def _live_segments(previous: store.LoadedIndex | None, replaced: set[str]) -> list[SegmentEntry]:
    """The previous version's segments with the replaced files marked deleted; segments left empty go."""
    if previous is None:
        return []
    kept = []
    for part in previous.parts:
        files = part.segment.info.files
        gone = {s for s in replaced if s in files and previous.manifest.files[s].segment == part.segment.name}
        deleted = tuple(sorted(set(part.deleted) | gone))
        if set(files) - set(deleted):
            kept.append(SegmentEntry(part.segment.name, deleted))
    return kept


def is_stale(settings: Settings) -> bool:
    """True when `rag build` would change the index (cheap: hashes files, loads no model)."""
    try:
        manifest = Manifest.read(store.current_version(settings.index) / store.MANIFEST)
    except (RagError, TypeError):
        return True
    if _arithmetic(settings, manifest)[1]:
        return True
    if readers.stale_kinds(manifest.readers, {entry.kind for entry in manifest.files.values()}):
        return True
    found = scan(settings.corpus, settings.extensions, settings.max_file_bytes, known=Known.of(manifest))
    found, _ = known_unreadable(found, manifest)
    return diff(manifest.files, found.documents).any

"""Build and update the index: only what changed is embedded, and the live index is never at risk."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from rag import readers, store
from rag.chunking import LineIndex, pack_passages
from rag.config import Settings
from rag.corpus import CorpusScan, scan
from rag.embedding import Arithmetic, Embedder, build_arithmetic, load_embedder
from rag.errors import BuildLocked, IndexMissing, RagError
from rag.manifest import FileEntry, Manifest, diff, recipe
from rag.readers.worker import Extractor
from rag.records import Document, Passage, Skipped

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildSummary:
    """What one build did, for the one-line summary and `rag build --json`."""

    files_added: int = 0
    files_changed: int = 0
    files_removed: int = 0
    files_renamed: int = 0
    files_unchanged: int = 0
    files_skipped: int = 0
    passages: int = 0
    passages_embedded: int = 0
    passages_reused: int = 0
    passages_removed: int = 0
    seconds: float = 0.0
    files_converted: int = 0
    """Converted files (PDF, Word, HTML) read this build; unchanged ones reuse their stored text."""
    conversion_seconds: float = 0.0
    full: bool = False
    reason: str = ""
    version: str = ""
    precision: str = ""
    arithmetic: str = ""
    """Which arithmetic embedded the passages and why (`auto: int8, no native bfloat16 on this CPU`)."""
    skipped: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """One line a person reads at a glance."""
        files = (
            f"files: {self.files_added} added, {self.files_changed} changed, {self.files_removed} removed, "
            f"{self.files_renamed} renamed, {self.files_unchanged} unchanged, {self.files_skipped} skipped"
        )
        passages = (
            f"passages: {self.passages_embedded} embedded, {self.passages_reused} reused, "
            f"{self.passages_removed} removed, {self.passages} in index"
        )
        kind = "full build" if self.full else "incremental build"
        if not self.version:
            kind = "index up to date"
        arithmetic = f"; arithmetic {self.arithmetic}" if self.passages_embedded else ""
        return f"{kind}; {files}; {passages}{arithmetic}; {self.seconds:.1f}s"

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def build_lock(root: Path, timeout: float):
    """Hold the index folder's lock; wait up to `timeout` seconds for another build, then refuse."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / ".lock"
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise BuildLocked(
                        f"another build ({holder}) is writing {root}; wait for it to finish and run "
                        f"`rag build` again"
                    ) from None
                if not told:
                    log.warning("another build is writing %s; waiting for it", root)
                    told = True
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def _text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


def chunk_document(document: Document, embedder: Embedder, max_tokens: int, overlap: int) -> list[Passage]:
    """Passages of one document with ids `source#n`, spans, and line numbers."""
    budget = (max_tokens or embedder.max_tokens) - 2  # room for the model's [CLS] and [SEP]
    spans = pack_passages(document.text, embedder.count_tokens, budget, overlap)
    lines = LineIndex(document.text)
    return [
        Passage(f"{document.source}#{n}", document.source, a, b, *lines.lines(a, b), document.text[a:b])
        for n, (a, b) in enumerate(spans, start=1)
    ]


def _previous(root: Path, settings: Settings, full: bool) -> tuple[store.LoadedIndex | None, str, Arithmetic]:
    """The live index if it can be extended, else None and why a full build is needed; and the arithmetic."""
    if full:
        return None, "--full asked for", _arithmetic(settings, None)[0]
    try:
        previous = store.load(root)
    except IndexMissing:
        return None, "no index yet", _arithmetic(settings, None)[0]
    except RagError as error:
        return None, f"previous index unusable ({error})", _arithmetic(settings, None)[0]
    arithmetic, mismatches = _arithmetic(settings, previous.manifest)
    if mismatches:
        return None, "settings changed: " + "; ".join(mismatches), arithmetic
    return previous, "", arithmetic


def _arithmetic(settings: Settings, manifest: Manifest | None) -> tuple[Arithmetic, list[str]]:
    """The arithmetic a build embeds in (the index's own while it can be extended), and what stops
    the index in `manifest` from being extended."""
    if manifest is None:
        return build_arithmetic(settings.precision, None), []
    arithmetic = build_arithmetic(settings.precision, manifest.precision)
    mismatches = manifest.mismatches(recipe(settings), arithmetic.precision)
    return (build_arithmetic(settings.precision, None) if mismatches else arithmetic), mismatches


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

    The model is rag's own in the arithmetic RAG_PRECISION asks for unless `embedder_factory` is given;
    `embedder_factory`, `scanner` and `converter` (`read_converted`'s shape) are where a cluster
    build plugs in (rag/distributed_build.py): the embedder is asked only for the passages whose
    vectors are not reused, the converter only for files whose text of record is not stored.
    """
    started = time.perf_counter()
    say = progress or (lambda message: log.info(message))
    root = Path(settings.index)
    with build_lock(root, settings.lock_timeout):
        store.collect_garbage(root)
        say(f"reading {settings.corpus}")
        found = scanner(settings.corpus, settings.extensions, settings.max_file_bytes)
        previous, reason, arithmetic = _previous(root, settings, full)
        factory = embedder_factory or (lambda name: load_embedder(name, arithmetic.precision))
        found, still_unreadable = known_unreadable(found, previous.manifest if previous else None)
        old_files = previous.manifest.files if previous else {}
        changes = diff(old_files, found.documents)
        if previous and not changes.any:
            skipped = {s.source: s.reason for s in found.skipped}
            return BuildSummary(
                files_unchanged=len(changes.unchanged), files_skipped=len(skipped), skipped=skipped,
                passages=len(previous.passages), seconds=time.perf_counter() - started,
            )
        scratch = root / f".tmp-v-texts-{os.getpid()}-{time.time_ns()}"  # removed by the next build if this one dies
        try:
            return _build_changed(settings, found, previous, still_unreadable, old_files, reason, scratch,
                                  factory, arithmetic, say, started, converter or read_converted)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _build_changed(settings, found, previous, still_unreadable, old_files, reason, scratch, embedder_factory,
                   arithmetic: Arithmetic, say, started, converter):
    """The part of a build that converts, embeds and writes a new version (the caller holds the lock)."""
    root = Path(settings.index)
    found, unreadable, conversion = convert(found, previous, settings, say, scratch, converter)
    unreadable.update(still_unreadable)
    changes = diff(old_files, found.documents)
    skipped = {s.source: s.reason for s in found.skipped}
    counts = dict(
        files_added=len(changes.added),
        files_changed=len(changes.changed),
        files_removed=len(changes.removed),
        files_renamed=len(changes.renamed),
        files_unchanged=len(changes.unchanged),
        files_skipped=len(skipped),
        skipped=skipped,
        files_converted=conversion[0],
        conversion_seconds=round(conversion[1], 3),
    )
    passages, vectors, embedded, reused, removed = _assemble(
        found.documents, previous, changes.renamed, settings, embedder_factory, say
    )
    ran = (arithmetic.precision, arithmetic.describe())
    if previous is not None and not embedded:  # nothing embedded: the vectors are as they were
        ran = (previous.manifest.precision, previous.manifest.arithmetic)
    per_file = Counter(p.source for p in passages)
    manifest = Manifest(
        model=settings.model,
        dimension=vectors.shape[1],
        max_tokens=settings.max_tokens,
        overlap=settings.overlap,
        files={
            d.source: FileEntry(d.sha256, d.encoding, per_file[d.source], d.kind, d.size, d.mtime_ns)
            for d in found.documents
        },
        passages=len(passages),
        built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        skipped=skipped,
        unreadable=unreadable,
        tokenizer=recipe(settings)["tokenizer"],
        precision=ran[0],
        arithmetic=ran[1],
    )
    say(f"writing {len(passages)} passages")
    texts = {d.sha256: scratch if d.record is not None else previous.folder for d in found.documents if d.kind != "text"}
    version = store.write_version(root, manifest, passages, vectors, texts)
    store.publish(root, version)
    store.collect_garbage(root)
    return BuildSummary(
        **counts,
        passages=len(passages),
        passages_embedded=embedded,
        passages_reused=reused,
        passages_removed=removed,
        seconds=time.perf_counter() - started,
        full=previous is None,
        reason=reason,
        version=version.name,
        precision=ran[0],
        arithmetic=ran[1],
    )


def known_unreadable(found: CorpusScan, manifest: Manifest | None) -> tuple[CorpusScan, dict[str, str]]:
    """Converted files that failed before with the same bytes are skipped again with their reason, not re-read.

    Returns the scan without them and their sha256 → reason, to remember in the next manifest.
    """
    if manifest is None or not manifest.unreadable:
        return found, {}
    documents, skipped, still = [], list(found.skipped), {}
    for document in found.documents:
        reason = manifest.unreadable.get(document.sha256) if document.kind != "text" else None
        if reason:
            skipped.append(Skipped(document.source, reason))
            still[document.sha256] = reason
        else:
            documents.append(document)
    return CorpusScan(documents, sorted(skipped, key=lambda s: s.source)), still


READERS_AT_ONCE = max(1, min(2, os.cpu_count() or 1))
"""Files converted side by side, each in its own child process."""


def convert(found: CorpusScan, previous: store.LoadedIndex | None, settings: Settings, say: Progress, scratch: Path,
            converter=None):
    """Give every converted document its text of record: the stored one when its sha256 was indexed
    before, else read now in a child process with a time limit. Files that cannot be read are skipped.

    New texts of record are written to `scratch` at once (their character boxes do not stay in
    memory); a document keeps its text, and `record` is set when its text came from `scratch`.

    Returns the scan with texts filled in, sha256 → reason for the unreadable, and (files read, seconds).
    """
    ready: dict[str, Document] = {}
    to_read = []
    for document in found.documents:
        entry = previous.manifest.files.get(document.source) if previous else None
        if document.kind == "text" or (entry is not None and entry.sha256 == document.sha256):
            ready[document.source] = document  # text, or unchanged: passages and stored text are reused
            continue
        record = readers.load_record(previous.folder, document.sha256) if previous else None
        if record is None:
            to_read.append(document)
        else:
            ready[document.source] = replace(document, text=record.text)  # copied or renamed: stored text reused
    records, seconds = (converter or read_converted)(to_read, settings, say)
    documents, skipped, unreadable = [], list(found.skipped), {}
    for document in found.documents:
        record = records.get(document.source)
        if isinstance(record, str):
            log.warning("skipped %s: %s", document.source, record)
            skipped.append(Skipped(document.source, record))
            unreadable[document.sha256] = record
        elif record is not None:
            readers.save_record(scratch, document.sha256, record)
            documents.append(replace(document, text=record.text, record=replace(record, boxes=None)))
        else:
            documents.append(ready[document.source])
    return CorpusScan(documents, sorted(skipped, key=lambda s: s.source)), unreadable, (len(to_read), seconds)


def read_converted(documents: list[Document], settings: Settings, say: Progress) -> tuple[dict, float]:
    """source → text of record or reason, converting up to READERS_AT_ONCE files at a time; and the wall seconds."""
    if not documents:
        return {}, 0.0
    from concurrent.futures import ThreadPoolExecutor

    local, extractors = threading.local(), []

    def work(document: Document):
        if not hasattr(local, "extractor"):
            local.extractor = Extractor(settings.extract_timeout)
            extractors.append(local.extractor)
        say(f"reading {document.source}")
        return document.source, read_one(local.extractor, document.path, document.sha256, document.kind)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(READERS_AT_ONCE, len(documents)), thread_name_prefix="rag-convert") as pool:
        try:
            results = dict(pool.map(work, documents))
        finally:
            for extractor in extractors:
                extractor.close()
    return results, time.perf_counter() - started


def read_one(extractor: Extractor, path: Path, sha256: str, kind: str):
    """The text of record of one file, or the reason; the bytes read must be the bytes hashed."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return f"cannot be read ({error.strerror or error}); check its permissions"
    if hashlib.sha256(data).hexdigest() != sha256:
        return "it changed while the build read it; run `rag build` again"
    return extractor.read(kind, data)


def _assemble(documents, previous, renamed, settings, embedder_factory, say):
    """Passages for every document and their vectors: reused by text where possible, else embedded."""
    old_by_source: dict[str, list[Passage]] = {}
    old_rows: dict[bytes, int] = {}
    old_vectors = None
    if previous is not None:
        for row, passage in enumerate(previous.passages):
            old_by_source.setdefault(passage.source, []).append(passage)
            old_rows.setdefault(_text_key(passage.text), row)
        old_vectors = store.read_vectors(previous.folder)
    old_files = previous.manifest.files if previous else {}
    embedder = None
    passages: list[Passage] = []
    for document in documents:
        entry = old_files.get(renamed.get(document.source, document.source))
        kept = old_by_source.get(renamed.get(document.source, document.source))
        if entry is not None and entry.sha256 == document.sha256 and kept is not None:
            passages.extend(_moved(p, document.source) for p in kept)
            continue
        embedder = embedder or embedder_factory(settings.model)
        passages.extend(chunk_document(document, embedder, settings.max_tokens, settings.overlap))
    rows = [old_rows.get(_text_key(p.text)) for p in passages]
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        embedder = embedder or embedder_factory(settings.model)
    if embedder is None and previous is None:
        embedder = embedder_factory(settings.model)  # an empty corpus still needs the dimension
    dimension = embedder.dimension if embedder else previous.manifest.dimension
    vectors = np.zeros((len(passages), dimension), dtype=np.float32)
    reused = [i for i, row in enumerate(rows) if row is not None]
    if reused:
        vectors[reused] = old_vectors[[rows[i] for i in reused]]
    if missing:
        say(f"embedding {len(missing)} passages with {settings.model} ({getattr(embedder, 'precision', 'its own arithmetic')})")
        vectors[missing] = embedder.encode(
            [passages[i].text for i in missing], batch_size=settings.batch_size, progress=True
        )
    kept_keys = {_text_key(p.text) for p in passages}
    removed = sum(1 for key in old_rows if key not in kept_keys)
    return passages, vectors, len(missing), len(reused), removed


def _moved(passage: Passage, source: str) -> Passage:
    """The same passage under a file's new name."""
    if passage.source == source:
        return passage
    number = passage.id.rsplit("#", 1)[1]
    return replace(passage, id=f"{source}#{number}", source=source)


def is_stale(settings: Settings) -> bool:
    """True when `rag build` would change the index (cheap: hashes files, loads no model)."""
    try:
        manifest = Manifest.read(store.current_version(settings.index) / store.MANIFEST)
    except (RagError, TypeError):
        return True
    if _arithmetic(settings, manifest)[1]:
        return True
    found, _ = known_unreadable(scan(settings.corpus, settings.extensions, settings.max_file_bytes), manifest)
    return diff(manifest.files, found.documents).any

"""Build and update the index: only what changed is embedded, and the live index is never at risk."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from rag import store
from rag.chunking import LineIndex, pack_passages
from rag.config import Settings, precision
from rag.corpus import scan
from rag.embedding import Arithmetic, Embedder, build_arithmetic, load_embedder
from rag.errors import BuildLocked, IndexMissing, RagError
from rag.manifest import FileEntry, Manifest, diff
from rag.records import Document, Passage

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
    asked = precision()
    if full:
        return None, "--full asked for", build_arithmetic(asked, None)
    try:
        previous = store.load(root)
    except IndexMissing:
        return None, "no index yet", build_arithmetic(asked, None)
    except RagError as error:
        return None, f"previous index unusable ({error})", build_arithmetic(asked, None)
    arithmetic = build_arithmetic(asked, previous.manifest.precision)
    mismatches = previous.manifest.mismatches(settings.model, settings.max_tokens, settings.overlap, arithmetic.precision)
    if mismatches:
        return None, "settings changed: " + "; ".join(mismatches), build_arithmetic(asked, None)
    return previous, "", arithmetic


def build(
    settings: Settings,
    full: bool = False,
    embedder_factory: Callable[[str], Embedder] | None = None,
    progress: Progress | None = None,
) -> BuildSummary:
    """Bring the index in `settings.index` up to date with `settings.corpus`, atomically.

    The model is rag's own in the arithmetic RAG_PRECISION asks for unless `embedder_factory` is given."""
    started = time.perf_counter()
    say = progress or (lambda message: log.info(message))
    root = Path(settings.index)
    with build_lock(root, settings.lock_timeout):
        store.collect_garbage(root)
        say(f"reading {settings.corpus}")
        found = scan(settings.corpus, settings.extensions, settings.max_file_bytes)
        previous, reason, arithmetic = _previous(root, settings, full)
        factory = embedder_factory or (lambda name: load_embedder(name, arithmetic.precision))
        old_files = previous.manifest.files if previous else {}
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
        )
        if previous and not changes.any:
            return BuildSummary(
                **counts, passages=len(previous.passages), seconds=time.perf_counter() - started
            )
        passages, vectors, embedded, reused, removed = _assemble(
            found.documents, previous, changes.renamed, settings, factory, say
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
            files={d.source: FileEntry(d.sha256, d.encoding, per_file[d.source]) for d in found.documents},
            passages=len(passages),
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            skipped=skipped,
            precision=ran[0],
            arithmetic=ran[1],
        )
        say(f"writing {len(passages)} passages")
        version = store.write_version(root, manifest, passages, vectors)
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
    arithmetic = build_arithmetic(precision(), manifest.precision)
    if manifest.mismatches(settings.model, settings.max_tokens, settings.overlap, arithmetic.precision):
        return True
    found = scan(settings.corpus, settings.extensions, settings.max_file_bytes)
    return diff(manifest.files, found.documents).any

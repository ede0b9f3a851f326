"""Converted documents (PDF, Word, HTML) in a build: their text of record, stored or read now in a
killable child process, and the files that could not be read, remembered by sha256."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rag.config import Settings
from rag.index.manifest import Manifest
from rag.ingest import readers
from rag.ingest.corpus import CorpusScan
from rag.ingest.readers.ocr import Options as OcrOptions
from rag.ingest.readers.worker import Extractor
from rag.types import Document, Skipped

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def known_unreadable(
    found: CorpusScan, manifest: Manifest | None, reread: frozenset[str] = frozenset()
) -> tuple[CorpusScan, dict[str, str]]:
    """Converted files that failed before with the same bytes are skipped again with their reason, not re-read
    (unless their kind's reader changed since: `reread`).

    Returns the scan without them and their sha256 → reason, to remember in the next manifest.
    """
    if manifest is None or not manifest.unreadable:
        return found, {}
    documents, skipped, still = [], list(found.skipped), {}
    for document in found.documents:
        reason = manifest.unreadable.get(document.sha256) if document.kind not in ("text", *reread) else None
        if reason:
            skipped.append(Skipped(document.source, reason))
            still[document.sha256] = reason
        else:
            documents.append(document)
    return CorpusScan(documents, sorted(skipped, key=lambda s: s.source), found.not_read), still


READERS_AT_ONCE = max(1, min(2, os.cpu_count() or 1))
"""Files converted side by side, each in its own child process."""


def convert(
    found: CorpusScan,
    previous,
    settings: Settings,
    say: Progress,
    scratch: Path,
    converter=None,
    reread: frozenset[str] = frozenset(),
):
    """Give every converted document its text of record: the stored one when its sha256 was indexed
    before, else read now in a child process with a time limit. Files that cannot be read are skipped.

    New texts of record are written to `scratch` at once (their character boxes do not stay in
    memory); a document keeps its text, and `record` is set when its text came from `scratch`.

    Files of a kind in `reread` (an older reader wrote their stored texts) are read again.

    Returns the scan with texts filled in, sha256 → reason for the unreadable, and (files read, seconds).
    """
    ready: dict[str, Document] = {}
    to_read = []
    for document in found.documents:
        entry = previous.manifest.files.get(document.source) if previous else None
        if document.kind == "text" or (
            entry is not None and entry.sha256 == document.sha256 and document.kind not in reread
        ):
            ready[document.source] = document  # text, or unchanged: passages and stored text are reused
            continue
        folder = previous.record_folder(document.sha256) if previous and document.kind not in reread else None
        record = readers.load_record(folder, document.sha256) if folder else None
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
    return (
        CorpusScan(documents, sorted(skipped, key=lambda s: s.source), found.not_read),
        unreadable,
        (len(to_read), seconds),
    )


def read_converted(documents: list[Document], settings: Settings, say: Progress) -> tuple[dict, float]:
    """source → text of record or reason, converting up to READERS_AT_ONCE files at a time; and the wall seconds."""
    if not documents:
        return {}, 0.0
    from concurrent.futures import ThreadPoolExecutor

    local, extractors = threading.local(), []

    def work(document: Document):
        if not hasattr(local, "extractor"):
            local.extractor = Extractor(settings.extract_timeout, ocr=ocr_options(settings))
            extractors.append(local.extractor)
        say(f"reading {document.source}")
        heard = lambda message: say(f"reading {document.source}: {message}")  # noqa: E731
        return document.source, read_one(local.extractor, document.path, document.sha256, document.kind, heard)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(READERS_AT_ONCE, len(documents)), thread_name_prefix="rag-convert") as pool:
        try:
            results = dict(pool.map(work, documents))
        finally:
            for extractor in extractors:
                extractor.close()
    return results, time.perf_counter() - started


def ocr_options(settings: Settings) -> OcrOptions:
    """How the readers recognise scanned pages under `settings`."""
    return OcrOptions(settings.ocr, settings.ocr_pages)


def read_one(extractor: Extractor, path: Path, sha256: str, kind: str, on_progress=None):
    """The text of record of one file, or the reason; the bytes read must be the bytes hashed."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return f"cannot be read ({error.strerror or error}); check its permissions"
    if hashlib.sha256(data).hexdigest() != sha256:
        return "it changed while the build read it; run `rag build` again"
    return extractor.read(kind, data, on_progress)

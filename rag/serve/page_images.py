"""The page a citation points at (a PDF page, a scanned image), rendered on the server with the quote highlighted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from rag.index import kept
from rag.ingest import readers
from rag.ingest.corpus import read_at_most
from rag.types import Citation

MAX_PAGES_SHOWN = 2
"""A quote across a page break shows both pages; a longer run shows its first two."""


@dataclass(frozen=True)
class PageImage:
    """One rendered page of a cited document: PNG bytes with the quote's character boxes drawn over it."""

    page: int
    label: str | None
    png: bytes


def cited_pages(corpus: Path, index, citation: Citation, max_pixels: int = 1200) -> list[PageImage]:
    """The pages of a citation with its quote highlighted; [] for formats without pages to show, or a file that
    changed.

    `index` is the loaded index version the citation was checked against: the rendered file must
    still be the one indexed (same sha256) and the quote must still stand in its text of record.
    """
    entry = index.manifest.files.get(citation.source) if index is not None else None
    render_page = readers.renderer(entry.kind) if entry is not None else None
    if render_page is None or not citation.pages:
        return []
    try:
        data = read_at_most(Path(corpus) / citation.source)
    except OSError:
        data = None
    if data is None or hashlib.sha256(data).hexdigest() != entry.sha256:
        data = kept.kept_bytes(index.root, entry.sha256)  # replaced through the chat, new version not yet indexed
        if data is None:
            return []
    record = readers.load_record(index.texts_folder(citation.source), entry.sha256, boxes=True)
    if record is None or record.text[citation.start : citation.end] != citation.quote:
        return []
    boxes = record.quote_boxes(citation.start, citation.end)
    try:
        return [
            PageImage(page, record.label_of(page), render_page(data, page, boxes.get(page, []), max_pixels))
            for page in citation.pages[:MAX_PAGES_SHOWN]
        ]
    except Exception:  # PDFium or Pillow failing on a file read at build time: show the passage text alone
        return []

"""Checking quotes: a quote is cited only if it stands, character for character, at its offsets in the file now
(for a converted file, in its stored text of record while the file still has the sha256 indexed), or in the
earlier version of a document replaced through the chat, which the index keeps until its new version is
published (rag.index.kept)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from rag.answer.candidates import Candidate
from rag.index import kept
from rag.ingest import readers
from rag.ingest.corpus import decode, read_record, read_source
from rag.types import Citation


def verify(chosen: Sequence[Candidate], places: Mapping[str | None, tuple[Path, object]]) -> list[Citation]:
    """Citations for the quotes that stand, character for character, at their offsets in the file now.

    `places` maps each hit's collection (None on a server of one corpus) to its corpus folder and the loaded index
    version it was answered from. For a converted file (PDF, Word, HTML) the offsets are into its stored text of
    record, used only while the file on disk still has the sha256 indexed.
    """
    texts: dict[tuple, object] = {}
    citations = []
    for candidate in chosen:
        source, collection = candidate.hit.passage.source, candidate.hit.collection
        corpus, index = places[collection]
        if (collection, source) not in texts:
            texts[collection, source] = _source_text(corpus, source, index)
        found = texts[collection, source]
        text = getattr(found, "text", found)
        if text is None or text[candidate.start : candidate.end] != candidate.text:
            found = texts[collection, source] = _kept_text(source, index) or found
            text = getattr(found, "text", found)
            if text is None or text[candidate.start : candidate.end] != candidate.text:
                continue
        line_start = text.count("\n", 0, candidate.start) + 1  # counted in C: no index of a large file's lines
        line_end = line_start + text.count("\n", candidate.start, max(candidate.start, candidate.end - 1))
        place = {}
        if hasattr(found, "pages_of"):
            pages = found.pages_of(candidate.start, candidate.end)
            page = pages[0] if pages else None
            place = dict(
                page=page,
                page_label=found.label_of(page),
                pages=tuple(pages),
                section=found.section_of(candidate.start),
            )
        context_start = candidate.start if candidate.context_start is None else candidate.context_start
        context_end = candidate.end if candidate.context_end is None else candidate.context_end
        citations.append(
            Citation(
                n=len(citations) + 1,
                source=source,
                start=candidate.start,
                end=candidate.end,
                line_start=line_start,
                line_end=line_end,
                quote=candidate.text,
                passage_id=candidate.hit.passage.id,
                relevance=round(candidate.relevance, 4),
                context_before=text[context_start : candidate.start],
                context_after=text[candidate.end : context_end],
                answer_start=candidate.answer_start,
                answer_end=candidate.answer_end,
                collection=collection,
                **place,
            )
        )
    return citations


def _source_text(corpus: Path, source: str, index):
    """The text a quote of `source` is checked against: the file itself, or a converted file's text of record."""
    entry = index.manifest.files.get(source) if index is not None else None
    if entry is not None and entry.kind != "text":
        return read_record(corpus, source, entry, index.texts_folder(source))
    return read_source(corpus, source)


def _kept_text(source: str, index):
    """The text of the version of `source` the index was built from, when the chat replaced the file since and
    kept that version's bytes; else None."""
    entry = index.manifest.files.get(source) if index is not None else None
    if entry is None or kept.kept_bytes(index.root, entry.sha256) is None:
        return None
    if entry.kind != "text":
        return readers.load_record(index.texts_folder(source), entry.sha256)
    decoded = decode(kept.kept_bytes(index.root, entry.sha256))
    return decoded[0] if isinstance(decoded, tuple) else None


def verified_passage(passage, corpus: Path, index) -> dict | None:
    """Where a passage stands (page, pages, page label and section where its format has them) when its text is
    its file's (or stored text of record's) at its offsets now, else None: a passage shown whole is checked as a
    quote is."""
    found = _source_text(corpus, passage.source, index)
    text = getattr(found, "text", found)
    if text is None or text[passage.start : passage.end] != passage.text:
        found = _kept_text(passage.source, index)
        text = getattr(found, "text", found)
        if text is None or text[passage.start : passage.end] != passage.text:
            return None
    if not hasattr(found, "pages_of"):
        return {}
    pages = found.pages_of(passage.start, passage.end)
    page = pages[0] if pages else None
    return {
        "page": page,
        "page_label": found.label_of(page),
        "pages": pages,
        "section": found.section_of(passage.start),
    }

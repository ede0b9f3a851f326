"""The passages of the files a build writes, and their vectors: carried over from the previous version where a
file was renamed or a passage's text is unchanged (in any stored segment), embedded otherwise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rag.index import store
from rag.index.segment import text_keys
from rag.ingest.chunking import passages_of
from rag.types import Passage


def assemble(documents, previous, renamed, settings, embedder_factory, say):
    """Passages of the files to write and their vectors: reused by text from any stored segment
    where possible, else embedded. Returns passages, vectors and how many were embedded."""
    embedder = None
    passages: list[Passage] = []
    for document in documents:
        old = renamed.get(document.source)
        if old is not None and previous is not None:
            passages.extend(_moved(p, document.source) for p in previous.file_passages(old))
            continue
        embedder = embedder or embedder_factory(settings.model)
        budget = (settings.max_tokens or embedder.max_tokens) - 2  # room for the model's [CLS] and [SEP]
        passages.extend(passages_of(document, embedder.count_tokens, budget, settings.overlap))
    stored = _stored_vectors(previous, passages)
    missing = [i for i, vector in enumerate(stored) if vector is None]
    if missing or (previous is None and embedder is None):
        embedder = embedder or embedder_factory(settings.model)  # an empty corpus still needs the dimension
    dimension = embedder.dimension if embedder else previous.manifest.dimension
    vectors = np.zeros((len(passages), dimension), dtype=np.float32)
    for i, vector in enumerate(stored):
        if vector is not None:
            vectors[i] = vector
    if missing:
        say(
            f"embedding {len(missing)} passages with {settings.model} ({getattr(embedder, 'precision', 'its own arithmetic')})"
        )
        vectors[missing] = embedder.encode(
            [passages[i].text for i in missing], batch_size=settings.batch_size, progress=True
        )
    return passages, vectors, len(missing)


def _stored_vectors(previous: store.LoadedIndex | None, passages: list[Passage]) -> list:
    """For each passage, the stored vector of a passage with the same text in any segment, or None."""
    found: list = [None] * len(passages)
    if previous is None or not passages:
        return found
    keys = text_keys([p.text for p in passages])
    for part in previous.parts:
        wanted = [i for i, vector in enumerate(found) if vector is None]
        if not wanted:
            break
        rows = part.segment.rows_with(keys[wanted])
        for i, row in zip(wanted, rows.tolist()):
            if row >= 0 and part.segment.passages[row].text == passages[i].text:  # the key is 64 bits: check
                found[i] = part.segment.vectors[[row]][0]
    return found


def removed(previous: store.LoadedIndex | None, replaced: set[str], passages: list[Passage]) -> int:
    """Passages of replaced or removed files whose text the new segment does not carry on."""
    if previous is None:
        return 0
    carried = {p.text for p in passages}
    return sum(1 for source in replaced for p in previous.file_passages(source) if p.text not in carried)


def _moved(passage: Passage, source: str) -> Passage:
    """The same passage under a file's new name."""
    if passage.source == source:
        return passage
    number = passage.id.rsplit("#", 1)[1]
    return replace(passage, id=f"{source}#{number}", source=source)

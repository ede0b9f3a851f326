"""What the live index holds, and whether the corpus has moved on since it was built."""

from __future__ import annotations

from rag import store
from rag.config import Settings
from rag.errors import RagError
from rag.indexer import is_stale
from rag.manifest import Manifest


def index_status(settings: Settings) -> dict:
    """Files, passages, model and build time of the live index; never loads the model."""
    info: dict = {"corpus": str(settings.corpus), "index": str(settings.index)}
    try:
        folder = store.current_version(settings.index)
        if folder is None:
            return {**info, "state": "missing", "hint": "run `rag build`"}
        manifest = Manifest.read(folder / store.MANIFEST)
    except RagError as error:
        return {**info, "state": "damaged", "hint": str(error)}
    info.update(
        version=folder.name,
        files=len(manifest.files),
        passages=manifest.passages,
        skipped=len(manifest.skipped),
        model=manifest.model,
        dimension=manifest.dimension,
        index_type=manifest.index_type,
        built_at=manifest.built_at,
    )
    try:
        stale = is_stale(settings)
    except RagError as error:
        return {**info, "state": "unknown", "hint": str(error)}
    info["state"] = "stale" if stale else "up to date"
    if stale:
        info["hint"] = "the corpus or settings changed; run `rag build`"
    return info

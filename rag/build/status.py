"""What the live index holds, and whether the corpus has moved on since it was built."""

from __future__ import annotations

import os
from pathlib import Path

from rag.build.indexer import is_stale
from rag.config import Settings
from rag.embed.arithmetic import query_arithmetic
from rag.errors import IndexMismatch, IndexMissing, RagError
from rag.index import store
from rag.index.manifest import recipe_hash
from rag.ingest.corpus import not_read_phrase


def index_status(settings: Settings) -> dict:
    """Files, passages, model, arithmetic and build time of the live index, every file checked; never loads the model."""
    info: dict = {"corpus": str(settings.corpus), "index": str(settings.index)}
    try:
        loaded = store.load(settings.index)
    except IndexMissing:
        return {**info, "state": "missing", "hint": "run `rag build`"}
    except IndexMismatch as error:
        return {**info, "state": "outdated", "hint": str(error)}
    except RagError as error:
        return {**info, "state": "damaged", "hint": str(error)}
    folder, manifest = loaded.folder, loaded.manifest
    info.update(
        version=folder.name,
        files=len(manifest.files),
        passages=manifest.passages,
        skipped=len(manifest.skipped),
        **({"not_read": not_read_phrase(manifest.not_read)} if manifest.not_read else {}),
        model=manifest.model,
        dimension=manifest.dimension,
        index_type=manifest.index_type,
        recipe=recipe_hash(manifest.recipe()),
        arithmetic=manifest.arithmetic or manifest.precision,
        **({"int8_recipe": manifest.int8_recipe} if manifest.int8_recipe else {}),
        built_at=manifest.built_at,
        segments=[_segment(part) for part in loaded.parts],
        deleted=sum(part.segment.info.passages - part.live for part in loaded.parts),
        bytes_on_disk=bytes_on_disk(settings.index),
    )
    loaded.release()
    questions = query_arithmetic(manifest.precision)
    if questions.precision != manifest.precision:
        info["question_arithmetic"] = f"{questions.precision}: {questions.reason}"
    try:
        stale = is_stale(settings)
    except RagError as error:
        return {**info, "state": "unknown", "hint": str(error)}
    info["state"] = "stale" if stale else "up to date"
    if stale:
        info["hint"] = "the corpus or settings changed; run `rag build`"
    return info


def _segment(part: store.Part) -> dict:
    """One segment as `rag status` shows it."""
    info = part.segment.info
    return {
        "name": info.name,
        "passages": part.live,
        "deleted": info.passages - part.live,
        "index_type": info.index_type,
        "bytes": bytes_on_disk(part.segment.folder),
    }


def bytes_on_disk(folder: Path) -> int:
    """Bytes the files under `folder` take, each hard-linked file counted once."""
    seen, total = set(), 0
    for base, _, names in os.walk(folder):
        for name in names:
            try:
                info = os.lstat(os.path.join(base, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total

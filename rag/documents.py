"""Adding and removing corpus documents on behalf of the chat UI, refusing anything unsafe."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from rag.corpus import decode
from rag.errors import UploadRefused

_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)


def safe_name(name: str, extensions: tuple[str, ...]) -> str:
    """A plain file name for an upload, or UploadRefused saying what is wrong with `name`."""
    raw = str(name or "")
    if "/" in raw or "\\" in raw or raw in (".", ".."):
        raise UploadRefused(f"{raw!r} is a path, not a file name; upload the file itself")
    cleaned = unicodedata.normalize("NFC", raw).strip()
    cleaned = _UNSAFE.sub("_", cleaned).strip(" ")
    if not cleaned or cleaned.startswith("."):
        raise UploadRefused(f"{raw!r} is a hidden or empty file name; rename the file")
    if not cleaned.lower().endswith(tuple(e.lower() for e in extensions)):
        allowed = ", ".join(extensions)
        raise UploadRefused(f"{raw!r} is not an accepted type; only {allowed} files can be added")
    if len(cleaned.encode("utf-8")) > 200:
        raise UploadRefused(f"{raw[:40]!r}… is too long a file name; shorten it")
    return cleaned


def add_document(corpus: Path, name: str, data: bytes, extensions: tuple[str, ...], max_bytes: int) -> Path:
    """Write one uploaded document into the corpus folder (never outside it) and return its path."""
    filename = safe_name(name, extensions)
    if len(data) > max_bytes:
        raise UploadRefused(
            f"{filename} is {len(data):,} bytes, over the {max_bytes:,}-byte upload limit; "
            f"split it or copy it into the corpus folder directly"
        )
    decoded = decode(data)
    if isinstance(decoded, str):
        raise UploadRefused(f"{filename}: {decoded}")
    if not decoded[0].strip():
        raise UploadRefused(f"{filename} is empty")
    corpus = Path(corpus)
    corpus.mkdir(parents=True, exist_ok=True)
    target = corpus / filename
    if target.resolve().parent != corpus.resolve():
        raise UploadRefused(f"{name!r} would be written outside the corpus folder; refused")
    tmp = corpus / f".upload-{os.getpid()}-{filename}"
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def delete_document(corpus: Path, source: str) -> None:
    """Remove one document, named by its path relative to the corpus, from the corpus folder."""
    corpus = Path(corpus).resolve()
    target = (corpus / str(source)).resolve()
    if not target.is_relative_to(corpus) or target == corpus:
        raise UploadRefused(f"{source!r} is not a document in the corpus folder")
    if not target.is_file():
        raise UploadRefused(f"{source!r} is not in the corpus folder (already deleted?)")
    target.unlink()


def list_documents(corpus: Path, extensions: tuple[str, ...]) -> list[str]:
    """Corpus documents by their path relative to the corpus folder."""
    corpus = Path(corpus)
    if not corpus.is_dir():
        return []
    return sorted(
        p.relative_to(corpus).as_posix()
        for p in corpus.rglob("*")
        if p.is_file() and p.name.lower().endswith(extensions) and not any(part.startswith(".") for part in p.relative_to(corpus).parts)
    )

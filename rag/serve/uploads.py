"""Adding and removing corpus documents on behalf of the chat UI, refusing anything unsafe."""

from __future__ import annotations

import os
import re
import unicodedata
import uuid
from pathlib import Path, PurePosixPath

from rag.errors import UploadRefused
from rag.ingest import readers
from rag.ingest.corpus import DOCUMENT_SUFFIXES, decode, printable

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


def add_document(
    corpus: Path, name: str, data: bytes, extensions: tuple[str, ...], max_bytes: int, keep=None
) -> tuple[Path, bool]:
    """Write one uploaded document into the corpus folder (never outside it); its path, and whether it replaced a
    document of that name. `keep(path)` is called with the document it replaces first, so that its version stays
    quotable until the new one is indexed."""
    filename = safe_name(name, extensions)
    if len(data) > max_bytes:
        raise UploadRefused(
            f"{filename} is {len(data):,} bytes, over the {max_bytes:,}-byte upload limit; "
            f"split it or copy it into the corpus folder directly"
        )
    _check_content(filename, data)
    corpus = Path(corpus)
    target = corpus / filename
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise UploadRefused(f"{filename} already exists in the corpus folder as a link or a folder; rename the upload")
    replaced = target.is_file()
    try:
        corpus.mkdir(parents=True, exist_ok=True)
        if replaced and keep is not None:
            keep(target)
        _write_new(corpus, target, data)
    except OSError as error:
        raise UploadRefused(f"{filename} could not be written to {corpus} ({error.strerror or error})") from None
    return target, replaced


def _check_content(filename: str, data: bytes) -> None:
    """UploadRefused unless the content is what the name says: the type is decided by the bytes."""
    if not data:
        raise UploadRefused(f"{filename} is empty")
    kind = readers.kind_of(filename) or "text"
    problem = readers.content_problem(kind, data, filename)
    if problem:
        raise UploadRefused(f"{filename}: {problem}")
    try:
        readers.check_container(kind, data)
    except readers.Unreadable as error:
        raise UploadRefused(f"{filename}: {error}") from None
    if kind != "text":
        return
    decoded = decode(data)
    if isinstance(decoded, str):
        raise UploadRefused(f"{filename}: {decoded}")
    if not decoded[0].lstrip("\ufeff").strip():
        raise UploadRefused(f"{filename} is empty")


def _write_new(corpus: Path, target: Path, data: bytes) -> None:
    """Write to a fresh hidden file (never through a link), then rename it over `target` in one step."""
    tmp = corpus / f".upload-{uuid.uuid4().hex}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def delete_document(corpus: Path, source: str, extensions: tuple[str, ...] = DOCUMENT_SUFFIXES) -> None:
    """Remove one document, named by its path relative to the corpus, from the corpus folder.

    Only documents can go: no paths leaving the folder, no hidden files, no other types. A link
    is removed itself, never the file it points to.
    """
    raw = str(source or "")
    relative = PurePosixPath(raw)
    if "\x00" in raw or not raw.strip() or relative.is_absolute() or ".." in relative.parts:
        raise UploadRefused(f"{raw!r} is not a document in the corpus folder")
    if any(part.startswith(".") for part in relative.parts) or not raw.lower().endswith(
        tuple(e.lower() for e in extensions)
    ):
        raise UploadRefused(f"{raw!r} is not a {'/'.join(extensions)} document; only documents can be deleted")
    corpus = Path(corpus).resolve()
    target = corpus / relative
    if not target.parent.resolve().is_relative_to(corpus):
        raise UploadRefused(f"{raw!r} is behind a linked folder, outside the corpus folder; refused")
    if not (target.is_symlink() or target.is_file()):
        raise UploadRefused(f"{raw!r} is not in the corpus folder (already deleted?)")
    try:
        target.unlink()
    except OSError as error:
        raise UploadRefused(f"{raw!r} could not be deleted ({error.strerror or error})") from None


def list_documents(corpus: Path, extensions: tuple[str, ...]) -> list[str]:
    """Corpus documents by their path relative to the corpus folder: the ones that can be shown and deleted.

    Names that are not valid UTF-8 are left out: they are never indexed and cannot be sent to a browser.
    """
    corpus = Path(corpus)
    if not corpus.is_dir():
        return []
    endings = tuple(e.lower() for e in extensions)
    found = []
    for path in corpus.rglob("*"):
        parts = path.relative_to(corpus).parts
        source = "/".join(parts)
        if (
            source.lower().endswith(endings)
            and printable(source) == source
            and not any(part.startswith(".") for part in parts)
            and (path.is_file() or path.is_symlink())
        ):
            found.append(source)
    return sorted(found)

"""Finding and reading corpus files: every skip is named, nothing stops a build."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from rag.errors import CorpusError
from rag.records import Document, Skipped

log = logging.getLogger(__name__)

# Characters beyond ASCII that legacy single-byte text plausibly holds.
_LEGACY_PUNCTUATION = set("„“”‘’‚–—…«»°§©®€£¥·•¡¿×÷±¼½¾¹²³µ¶ªº¢¤¦¨¯´¸†‡‰‹›™\xa0\xad")


@dataclass(frozen=True)
class CorpusScan:
    """What a walk of the corpus folder found."""

    documents: list[Document]
    skipped: list[Skipped]


def scan(corpus: Path, extensions: tuple[str, ...] = (".txt", ".md"), max_bytes: int = 20_000_000) -> CorpusScan:
    """Read every matching file under `corpus`, recursively, in a stable order."""
    corpus = Path(corpus)
    if not corpus.is_dir():
        raise CorpusError(
            f"corpus folder {str(corpus)!r} does not exist; create it and put .txt or .md files "
            f"in it, or point --corpus / RAG_CORPUS at your documents"
        )
    root = corpus.resolve()
    documents, skipped = [], []
    for path in _walk(corpus):
        source = path.relative_to(corpus).as_posix()
        if not source.lower().endswith(tuple(e.lower() for e in extensions)):
            continue
        result = read_file(path, source, root, max_bytes)
        if isinstance(result, Skipped):
            log.warning("skipped %s: %s", source, result.reason)
            skipped.append(result)
        else:
            documents.append(result)
    return CorpusScan(documents, skipped)


def _walk(corpus: Path):
    """Files under `corpus` in sorted order; hidden names and linked folders are not entered."""
    for folder, dirs, files in os.walk(corpus, followlinks=False, onerror=_log_walk_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name


def _log_walk_error(error: OSError) -> None:
    log.warning("skipped folder %s: %s", error.filename, error.strerror)


def read_file(path: Path, source: str, root: Path, max_bytes: int = 20_000_000) -> Document | Skipped:
    """Decode one file, or say in plain words why it was left out."""
    if path.is_symlink():
        target = path.resolve()
        if not target.exists():
            return Skipped(source, f"broken symbolic link to {target}; fix or remove the link")
        if not target.is_relative_to(root):
            return Skipped(source, f"symbolic link to {target}, outside the corpus folder; not followed")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return Skipped(
                source,
                f"{size:,} bytes is over the {max_bytes:,}-byte limit; split the file or raise RAG_MAX_FILE_BYTES",
            )
        data = path.read_bytes()
    except OSError as error:
        return Skipped(source, f"cannot be read ({error.strerror or error}); check its permissions")
    decoded = decode(data)
    if isinstance(decoded, str):
        return Skipped(source, decoded)
    text, encoding = decoded
    if not text.lstrip("\ufeff").strip():
        return Skipped(source, "empty file")
    return Document(source, path, text, hashlib.sha256(data).hexdigest(), encoding)


def decode(data: bytes) -> tuple[str, str] | str:
    """Decoded text with universal newlines and the encoding used, or the reason it cannot be read.

    UTF-8 text decodes exactly as `Path.read_text(encoding="utf-8")` does, so offsets into
    it can be checked by anyone with the file.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return _newlines(data.decode("utf-16", errors="strict")), "utf-16"
        except UnicodeDecodeError:
            return "starts with a UTF-16 byte-order mark but is not valid UTF-16; save it as UTF-8"
    if b"\x00" in data:
        return "binary file (holds NUL bytes); only text files are indexed"
    try:
        return _newlines(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        text = None
    if text is not None and _looks_like_legacy_text(text):
        return _newlines(text), "cp1252"
    return "not valid UTF-8 and its encoding cannot be told reliably; save it as UTF-8"


def _looks_like_legacy_text(text: str) -> bool:
    """True when every non-ASCII character is a letter or common punctuation (Latin-1 / cp1252 prose)."""
    unusual = [ch for ch in text if ord(ch) > 127 and not ch.isalpha() and ch not in _LEGACY_PUNCTUATION]
    controls = [ch for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f"]
    return not unusual and not controls


def _newlines(text: str) -> str:
    """Translate CRLF and CR to LF, as Python's text mode does."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_source(corpus: Path, source: str) -> str | None:
    """The decoded text of one corpus file as it is on disk now, or None if it is gone or unreadable."""
    path = Path(corpus) / source
    try:
        decoded = decode(path.read_bytes())
    except OSError:
        return None
    return decoded[0] if isinstance(decoded, tuple) else None

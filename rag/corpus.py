"""Finding and reading corpus files: every skip is named, nothing stops a build."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
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
    endings = tuple(e.lower() for e in extensions)
    documents, skipped = [], []
    for path, problem in _walk(corpus):
        source = path.relative_to(corpus).as_posix()
        if problem is None and not source.lower().endswith(endings):
            continue
        result = Skipped(printable(source), problem) if problem else read_file(path, source, root, max_bytes)
        if isinstance(result, Skipped):
            log.warning("skipped %s: %s", result.source, result.reason)
            skipped.append(result)
        else:
            documents.append(result)
    return CorpusScan(documents, skipped)


def _walk(corpus: Path):
    """(path, None) for files under `corpus` in sorted order, (folder, reason) for a folder not read.

    Hidden names are passed over; linked folders are not entered (a warning names each).
    """
    errors: list[OSError] = []
    for folder, dirs, files in os.walk(corpus, followlinks=False, onerror=errors.append):
        while errors:
            error = errors.pop(0)
            yield Path(error.filename or folder), f"folder cannot be read ({error.strerror or error}); check its permissions"
        for name in dirs:
            if not name.startswith(".") and os.path.islink(os.path.join(folder, name)):
                log.warning("not entered %s: a symbolic link to a folder; linked folders are not read", Path(folder, name))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name, None
    for error in errors:  # an unreadable corpus folder itself
        yield Path(error.filename or corpus), f"folder cannot be read ({error.strerror or error}); check its permissions"


def printable(source: str) -> str:
    """`source` safe to print and store: bytes of a non-UTF-8 file name shown as `\\xNN`."""
    return source.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_file(path: Path, source: str, root: Path, max_bytes: int = 20_000_000) -> Document | Skipped:
    """Decode one file, or say in plain words why it was left out."""
    if printable(source) != source:
        return Skipped(printable(source), "its path is not valid UTF-8; rename the file or folder")
    if path.is_symlink():
        reason = _link_problem(path, root)
        if reason:
            return Skipped(source, reason)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return Skipped(source, "not a regular file (a pipe, socket or device); only plain files are read")
        if info.st_size > max_bytes:
            return Skipped(source, _too_big(info.st_size, max_bytes))
        data = read_at_most(path, max_bytes)
    except OSError as error:
        return Skipped(source, f"cannot be read ({error.strerror or error}); check its permissions")
    if data is None:  # it grew past the limit after stat
        return Skipped(source, _too_big(max_bytes + 1, max_bytes))
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


def _link_problem(path: Path, root: Path) -> str:
    """Why a symbolic link is not followed, or "" when it leads to a file inside the corpus."""
    try:
        target = path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return "symbolic link that loops back on itself; fix or remove the link"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link that loops back on itself; fix or remove the link"
        return f"broken symbolic link to {path.resolve()}; fix or remove the link"
    if not target.is_relative_to(root):
        return f"symbolic link to {target}, outside the corpus folder; not followed"
    return ""


def _too_big(size: int, max_bytes: int) -> str:
    return f"{size:,} bytes is over the {max_bytes:,}-byte limit; split the file or raise RAG_MAX_FILE_BYTES"


def read_at_most(path: Path, max_bytes: int | None = None) -> bytes | None:
    """The bytes of a file, or None when it holds more than `max_bytes` (read no further).

    Callers check `stat` first so a pipe is never opened; a device swapped in raises OSError.
    """
    with path.open("rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    return None if max_bytes is not None and len(data) > max_bytes else data


def read_source(corpus: Path, source: str) -> str | None:
    """The decoded text of one corpus file as it is on disk now, or None if it is gone or unreadable."""
    path = Path(corpus) / source
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return None  # a pipe or device put in its place: never open it
        decoded = decode(read_at_most(path))
    except (OSError, ValueError, RuntimeError):
        return None
    return decoded[0] if isinstance(decoded, tuple) else None

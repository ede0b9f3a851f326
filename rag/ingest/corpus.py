"""Finding and reading corpus files: every skip is named, nothing stops a build."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from rag.config import DOCUMENT_SUFFIXES
from rag.errors import CorpusError
from rag.ingest import readers
from rag.ingest.readers.text import decode
from rag.types import Document, Skipped

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusScan:
    """What a walk of the corpus folder found."""

    documents: list[Document]
    skipped: list[Skipped]
    not_read: dict[str, int] = field(default_factory=dict)
    """File name ending (".key", "" for none) → how many files of that type were left out, not being read."""


RACY_NS = 2_000_000_000
"""A file modified less than this before the scan that recorded it may have changed again within the
same timestamp tick (2 s on FAT): it is read and hashed next time, whatever its size and mtime say."""


@dataclass(frozen=True)
class Known:
    """The files an index already holds, and when their corpus was scanned: a file whose size and
    mtime are as recorded, and was last modified well before that scan, is not read again."""

    files: dict
    scanned_ns: int

    @classmethod
    def of(cls, manifest) -> Known | None:
        return cls(manifest.files, manifest.scanned_ns) if manifest is not None and manifest.scanned_ns else None

    def unchanged(self, path: Path, source: str) -> Document | None:
        """The indexed document for `source`, without its text, if the file on disk is surely the same."""
        entry = self.files.get(source)
        if entry is None or not entry.mtime_ns or entry.mtime_ns > self.scanned_ns - RACY_NS:
            return None
        try:
            info = path.lstat()
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode) or info.st_size != entry.size or info.st_mtime_ns != entry.mtime_ns:
            return None
        return Document(source, path, "", entry.sha256, entry.encoding, entry.kind, entry.size, entry.mtime_ns)


def scan(
    corpus: Path,
    extensions: tuple[str, ...] = DOCUMENT_SUFFIXES,
    max_bytes: int = 20_000_000,
    known: Known | None = None,
) -> CorpusScan:
    """Read every matching file under `corpus`, recursively, in a stable order.

    Text files are decoded; converted formats (PDF, Word, HTML) are hashed and checked against
    their name here and converted by the build only when their content is new (`Document.text` is "").
    Files `known` vouches for are not read: their documents come back without text.
    """
    corpus = Path(corpus)
    if not corpus.is_dir():
        raise CorpusError(
            f"corpus folder {str(corpus)!r} does not exist; create it and put .txt or .md files "
            f"in it, or point --corpus / RAG_CORPUS at your documents"
        )
    root = corpus.resolve()
    endings = tuple(e.lower() for e in extensions)
    documents, skipped, not_read = [], [], {}
    for path, problem in _walk(corpus):
        source = path.relative_to(corpus).as_posix()
        if problem is None and not source.lower().endswith(endings):
            ending = Path(source).suffix.lower()
            not_read[ending] = not_read.get(ending, 0) + 1
            continue
        result = (
            Skipped(printable(source), problem)
            if problem
            else (known and known.unchanged(path, source)) or read_file(path, source, root, max_bytes)
        )
        if isinstance(result, Skipped):
            log.warning("skipped %s: %s", result.source, result.reason)
            skipped.append(result)
        else:
            documents.append(result)
    return CorpusScan(documents, skipped, dict(sorted(not_read.items())))


def not_read_phrase(not_read: dict[str, int], readable: tuple[str, ...] = DOCUMENT_SUFFIXES) -> str:
    """ "3 files of types not read: .key, .numbers; .csv has a reader: add it to RAG_EXTENSIONS" ("" for none)."""
    if not not_read:
        return ""
    count = sum(not_read.values())
    kinds = ", ".join(ending or "(no ending)" for ending in not_read)
    line = f"{count} file{'s' if count != 1 else ''} of types not read: {kinds}"
    could = [ending for ending in not_read if ending in readable]
    if could:
        line += f"; {', '.join(could)} {'has a reader' if len(could) == 1 else 'have readers'}: add to RAG_EXTENSIONS"
    return line


def _walk(corpus: Path):
    """(path, None) for files under `corpus` in sorted order, (folder, reason) for a folder not read.

    Hidden names are passed over; linked folders are not entered (a warning names each).
    """
    errors: list[OSError] = []
    for folder, dirs, files in os.walk(corpus, followlinks=False, onerror=errors.append):
        while errors:
            error = errors.pop(0)
            yield (
                Path(error.filename or folder),
                f"folder cannot be read ({error.strerror or error}); check its permissions",
            )
        for name in dirs:
            if not name.startswith(".") and os.path.islink(os.path.join(folder, name)):
                log.warning(
                    "not entered %s: a symbolic link to a folder; linked folders are not read", Path(folder, name)
                )
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(folder) / name, None
    for error in errors:  # an unreadable corpus folder itself
        yield (
            Path(error.filename or corpus),
            f"folder cannot be read ({error.strerror or error}); check its permissions",
        )


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
    if not data:
        return Skipped(source, "empty file")
    kind = readers.kind_of(source) or "text"
    problem = readers.content_problem(kind, data, source)
    if problem:
        return Skipped(source, problem)
    sha = hashlib.sha256(data).hexdigest()
    if kind != "text":
        return Document(source, path, "", sha, "", kind, len(data), info.st_mtime_ns)
    decoded = decode(data)
    if isinstance(decoded, str):
        return Skipped(source, decoded)
    text, encoding = decoded
    if not text.lstrip("\ufeff").strip():
        return Skipped(source, "empty file")
    return Document(source, path, text, sha, encoding, "text", len(data), info.st_mtime_ns)


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


def unchanged(corpus: Path, source: str, sha256: str, size: int, mtime_ns: int) -> bool:
    """True when the file still holds the bytes indexed: same size and mtime, or else the same sha256."""
    path = Path(corpus) / source
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return False
        if info.st_mtime_ns == mtime_ns:
            return True
        return hashlib.sha256(read_at_most(path) or b"").hexdigest() == sha256
    except (OSError, ValueError, RuntimeError):
        return False


def read_record(corpus: Path, source: str, entry, texts_folder: Path):
    """The stored text of record of a converted file if the file on disk is still the one indexed, else None.

    `entry` is the file's manifest entry (sha256, size, mtime); `texts_folder` the segment holding it.
    """
    if not unchanged(corpus, source, entry.sha256, entry.size, entry.mtime_ns):
        return None
    return readers.load_record(texts_folder, entry.sha256)


_DECODED: dict[tuple, str] = {}
"""Files decoded lately, by path, inode, size and modification time (in ns): a question quoting a large file does
not read and decode it again while it is unchanged; a change of any of these reads it afresh, and a file modified
within RACY_NS of the read is never kept."""
DECODED_CHARS = 64_000_000
"""Most characters `_DECODED` holds in all."""


def read_source(corpus: Path, source: str) -> str | None:
    """The decoded text of one corpus file as it is on disk now, or None if it is gone or unreadable."""
    path = Path(corpus) / source
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return None  # a pipe or device put in its place: never open it
        key = (str(path), info.st_ino, info.st_size, info.st_mtime_ns)
        if key in _DECODED:
            return _DECODED[key]
        decoded = decode(read_at_most(path))
    except (OSError, ValueError, RuntimeError):
        return None
    if not isinstance(decoded, tuple):
        return None
    if time.time_ns() - info.st_mtime_ns < RACY_NS:
        return decoded[0]  # modified just now: the same size and time may yet hide another edit (see RACY_NS)
    _DECODED[key] = decoded[0]
    while sum(map(len, _DECODED.values())) > DECODED_CHARS and len(_DECODED) > 1:
        _DECODED.pop(next(iter(_DECODED)))
    return decoded[0]

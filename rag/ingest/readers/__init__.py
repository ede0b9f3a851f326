"""Readers: one module per document format, each turning a file's bytes into its text of record.

A reader module has `KIND`, `NAME`, `SUFFIXES`, `sniff(data) -> bool` (does the content carry this format's
signature?) and `read(data) -> TextRecord` (raising `Unreadable` with a reason a person can act on); a text-based
format without a signature (HTML, CSV, subtitles, mail) also has `plausible(data) -> bool`, asked when no signature
is found. Adding a format means adding one module and naming it in `_MODULES`.

Plain text (`.txt`, `.md`) is not converted: its text of record is the decoded file itself, so
offsets stay offsets into the file (see `rag.ingest.readers.text`).
"""

from __future__ import annotations

import bisect
import importlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

_MODULES = (
    "rag.ingest.readers.pdf",
    "rag.ingest.readers.docx",
    "rag.ingest.readers.html",
    "rag.ingest.readers.pptx",
    "rag.ingest.readers.xlsx",
    "rag.ingest.readers.csv",
    "rag.ingest.readers.subtitles",
    "rag.ingest.readers.epub",
    "rag.ingest.readers.mail",
    "rag.ingest.readers.image",
)
TEXT_SUFFIXES = (".txt", ".md")
SECTION_SEPARATOR = " › "
BINARY_KINDS = ("pdf", "docx", "pptx", "xlsx", "epub")
"""Formats whose content has a signature of its own, so that a file of them under a text name is refused."""


class Unreadable(Exception):
    """A file a reader cannot turn into text; `str(error)` says why and what to do."""


progress_sink = None
"""Where `report` sends a long read's progress: set in the reader process to pass it on to the build."""


def report(message: str) -> None:
    """Tell the build how a long read goes ("OCR page 3 of 40"); each report also restarts its time limit."""
    if progress_sink is not None:
        progress_sink(message)


@dataclass(frozen=True)
class TextRecord:
    """The text of record of a converted document and where each character came from.

    `page_starts[i]` is the offset where physical page i + 1 begins; `boxes[j]` is the box
    (left, bottom, right, top, in PDF units on its page) of character j, NaN for characters the
    reader put in (spaces between lines, paragraph breaks); `sections` are (offset, heading path)
    pairs, each path holding from its offset on.
    """

    kind: str
    text: str
    page_starts: tuple[int, ...] = ()
    page_labels: tuple[str, ...] = ()
    page_frames: tuple[tuple[float, float, float, float], ...] = ()
    sections: tuple[tuple[int, str], ...] = ()
    reader_version: int = 0
    """The `READER_VERSION` of the reader that wrote it (0: unrecorded); a stored one of another version is stale."""
    boxes: object = field(default=None, compare=False, repr=False)

    def page_of(self, offset: int) -> int | None:
        """The 1-based physical page that holds the character at `offset`, or None for formats without pages."""
        if not self.page_starts:
            return None
        return max(1, bisect.bisect_right(self.page_starts, offset))

    def pages_of(self, start: int, end: int) -> list[int]:
        """Every page the span `[start, end)` touches, in order."""
        first, last = self.page_of(start), self.page_of(max(start, end - 1))
        return [] if first is None else list(range(first, last + 1))

    def label_of(self, page: int | None) -> str | None:
        """The printed label of a 1-based page ("iv"), or None when the document defines none."""
        if page is None or not self.page_labels or not 0 < page <= len(self.page_labels):
            return None
        return self.page_labels[page - 1] or None

    def section_of(self, offset: int) -> str | None:
        """The heading path above the character at `offset` ("2 Methods › 2.1 Data"), or None."""
        at = bisect.bisect_right([s for s, _ in self.sections], offset) - 1
        return self.sections[at][1] or None if at >= 0 else None

    def quote_boxes(self, start: int, end: int) -> dict[int, list[tuple[float, float, float, float]]]:
        """Page → boxes of the characters of `[start, end)` on it (characters without a box left out)."""
        import numpy as np

        if self.boxes is None or not self.page_starts:
            return {}
        boxes = np.asarray(self.boxes[start:end], dtype=np.float32)
        found: dict[int, list] = {}
        for offset, box in zip(range(start, end), boxes):
            if not np.isnan(box).any():
                found.setdefault(self.page_of(offset), []).append(tuple(float(v) for v in box))
        return found

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "text": self.text,
                "page_starts": list(self.page_starts),
                "page_labels": list(self.page_labels),
                "page_frames": [list(f) for f in self.page_frames],
                "sections": [list(s) for s in self.sections],
                "reader_version": self.reader_version,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str, boxes=None) -> TextRecord:
        data = json.loads(raw)
        return cls(
            kind=data["kind"],
            text=data["text"],
            page_starts=tuple(data["page_starts"]),
            page_labels=tuple(data["page_labels"]),
            page_frames=tuple(tuple(f) for f in data["page_frames"]),
            sections=tuple((int(a), str(b)) for a, b in data["sections"]),
            reader_version=int(data.get("reader_version", 0)),
            boxes=boxes,
        )


TEXTS = "texts"
"""Folder of an index version that holds the text of record of each converted file, by sha256."""


def record_paths(folder: Path, sha256: str) -> tuple[Path, Path]:
    """Where a version keeps the text of record (`.json`) and character boxes (`.boxes.npy`) of one file."""
    base = Path(folder) / TEXTS
    return base / f"{sha256}.json", base / f"{sha256}.boxes.npy"


def save_record(folder: Path, sha256: str, record: TextRecord) -> list[Path]:
    """Write one text of record into an index version folder; returns the files written (to fsync)."""
    import numpy as np

    text_path, boxes_path = record_paths(folder, sha256)
    text_path.parent.mkdir(parents=True, exist_ok=True)
    text_path.write_text(record.to_json(), encoding="utf-8")
    written = [text_path]
    if record.boxes is not None:
        np.save(boxes_path, np.asarray(record.boxes, dtype=np.float32))
        written.append(boxes_path)
    return written


def link_record(source_folder: Path, folder: Path, sha256: str) -> list[Path]:
    """Carry one stored text of record from an older version into a new one (hard link, else copy)."""
    import shutil

    written = []
    for old, new in zip(record_paths(source_folder, sha256), record_paths(folder, sha256)):
        if not old.exists():
            continue
        new.parent.mkdir(exist_ok=True)
        try:
            os.link(old, new)
        except OSError:
            shutil.copyfile(old, new)
        written.append(new)
    return written


_RECENT: dict[tuple, TextRecord] = {}
"""Texts of record read lately, by (path, size, mtime): a question quoting one file reads it once."""


def load_record(folder: Path, sha256: str, boxes: bool = False) -> TextRecord | None:
    """The stored text of record of one file (boxes memory-mapped when asked for), or None if absent or damaged."""
    import numpy as np

    text_path, boxes_path = record_paths(folder, sha256)
    try:
        info = text_path.stat()
        key = (str(text_path), info.st_size, info.st_mtime_ns)
        record = _RECENT.get(key)
        if record is None:
            record = TextRecord.from_json(text_path.read_text(encoding="utf-8"))
            while len(_RECENT) >= 16:
                _RECENT.pop(next(iter(_RECENT)), None)
            _RECENT[key] = record
        found = np.load(boxes_path, mmap_mode="r") if boxes and boxes_path.exists() else None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return None
    if found is not None and len(found) != len(record.text):
        return None
    return replace(record, boxes=found) if found is not None else record


def _modules():
    return [importlib.import_module(name) for name in _MODULES]


def kind_of(name: str) -> str | None:
    """The format a file name claims by its ending: "text", "pdf", "docx", "html", or None."""
    lowered = name.lower()
    if lowered.endswith(TEXT_SUFFIXES):
        return "text"
    for module in _modules():
        if lowered.endswith(module.SUFFIXES):
            return module.KIND
    return None


def sniff(data: bytes) -> str | None:
    """The format the content itself shows (binary formats by their signature), or None."""
    for module in _modules():
        if module.sniff(data):
            return module.KIND
    return None


def content_problem(kind: str, data: bytes, name: str = "") -> str:
    """Why the content contradicts the name's format ("" when it does not): the type is decided by content.
    `name` is the file's name, whose ending the message repeats."""
    found = sniff(data)
    if kind == "text":
        if found in BINARY_KINDS:
            return f"named as text but its content is a {found.upper()} file; rename it to .{found}"
        return ""
    module = _module(kind)
    if found == kind or (found is None and hasattr(module, "plausible") and module.plausible(data)):
        return ""
    what = f"a {found.upper()} file" if found else "not a " + module.NAME
    ending = Path(name).suffix.lower() if name else f".{kind}"
    return f"named {ending} but its content is {what}; rename it to match its content"


def check_container(kind: str, data: bytes) -> None:
    """Unreadable when a zip-based format's archive is unsound or a zip bomb (checked before it is inflated)."""
    module = _module(kind) if kind != "text" else None
    if module is not None and hasattr(module, "check_archive"):
        module.check_archive(data)


def _module(kind: str):
    for module in _modules():
        if module.KIND == kind:
            return module
    raise KeyError(kind)


def renderer(kind: str):
    """The `render_page(data, page, boxes, max_pixels)` of a format whose pages can be shown with a quote marked
    (PDF, images), or None."""
    return getattr(_module(kind), "render_page", None) if kind != "text" else None


def reader_version(kind: str) -> int:
    """The version of this rag's reader for `kind` (its module's `READER_VERSION`, 0 where it names none)."""
    return getattr(_module(kind), "READER_VERSION", 0)


def reader_versions() -> dict[str, int]:
    """Kind → this rag's reader version, for every converted format: what an index records beside its texts."""
    return {module.KIND: getattr(module, "READER_VERSION", 0) for module in _modules()}


def stale_kinds(recorded: dict[str, int], kinds) -> list[str]:
    """The converted kinds among `kinds` whose stored texts of record another reader version wrote (`recorded`:
    kind → version as an index keeps it, a kind missing from it at 0): their files must be read again."""
    current = reader_versions()
    return sorted(kind for kind in set(kinds) if kind in current and recorded.get(kind, 0) != current[kind])


def read(kind: str, data: bytes, ocr=None) -> TextRecord:
    """The text of record of `data` in format `kind`, stamped with its reader's version, or Unreadable.
    `ocr` (`rag.ingest.readers.ocr.Options`) says how scanned pages are read, for the formats that have them."""
    module = _module(kind)
    record = module.read(data, ocr=ocr) if getattr(module, "USES_OCR", False) else module.read(data)
    if not record.text.strip():
        raise Unreadable("no text found in it")
    return replace(record, reader_version=reader_version(kind))

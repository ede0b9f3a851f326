"""Word (.docx) through python-docx: paragraphs and tables in document order, headings as the section path.

A .docx is a zip archive; it is checked before anything inflates it, so a zip bomb is refused
by its declared sizes and a file that is not a zip never reaches the XML parser.
"""

from __future__ import annotations

import io
import re
import zipfile

from rag.ingest.readers import SECTION_SEPARATOR, TextRecord, Unreadable

KIND = "docx"
NAME = "Word (.docx) file"
SUFFIXES = (".docx",)
MAX_INFLATED_BYTES = 200_000_000
"""Most bytes the archive may inflate to; Word documents of thousands of pages stay far below."""
MAX_RATIO = 200
"""Largest compression ratio of one member larger than 1 MB (XML compresses about 10:1)."""
_HEADING = re.compile(r"^(?:heading\s*(\d)|title)$", re.IGNORECASE)


def sniff(data: bytes) -> bool:
    """A zip archive holding `word/document.xml`."""
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return "word/document.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def check_archive(data: bytes) -> None:
    """Unreadable unless `data` is a sound zip whose members inflate to a sane size."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise Unreadable(
            "not a Word file: a .docx is a zip archive and this is not one (damaged, or another format)"
        ) from None
    with archive:
        members = archive.infolist()
        if "word/document.xml" not in {m.filename for m in members}:
            raise Unreadable("a zip archive without word/document.xml, so not a Word document")
        total = sum(m.file_size for m in members)
        if total > MAX_INFLATED_BYTES:
            raise Unreadable(
                f"its archive inflates to {total:,} bytes, over {MAX_INFLATED_BYTES:,}: refused as a zip bomb"
            )
        for member in members:
            if member.file_size > 1_000_000 and member.file_size > MAX_RATIO * max(member.compress_size, 1):
                raise Unreadable(
                    f"{member.filename} inflates {member.file_size // max(member.compress_size, 1):,}-fold: refused as a zip bomb"
                )


def read(data: bytes) -> TextRecord:
    """The text of record of a .docx: one paragraph per block, table rows as `| a | b |` lines."""
    check_archive(data)
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as error:  # python-docx raises many kinds for a damaged part
        raise Unreadable(f"damaged Word document ({type(error).__name__}: {error}); save it again from Word") from None
    blocks, sections, headings = [], [], []
    length = 0
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            text = " ".join(item.text.split())
            level = _heading_level(item)
            if level and text:
                headings = headings[: level - 1] + [text]
                sections.append((length, SECTION_SEPARATOR.join(headings)))
        elif isinstance(item, Table):
            text = "\n".join(
                "| " + " | ".join(" ".join(cell.text.split()) for cell in row.cells) + " |" for row in item.rows
            )
        else:
            continue
        if text.strip():
            blocks.append(text)
            length += len(text) + 2
    return TextRecord(kind=KIND, text="\n\n".join(blocks), sections=tuple(sections))


def _heading_level(paragraph) -> int:
    """1 for Title and Heading 1, n for Heading n, 0 for body text."""
    name = paragraph.style.name if paragraph.style is not None else ""
    match = _HEADING.match(name or "")
    if not match:
        return 0
    return int(match.group(1)) if match.group(1) else 1

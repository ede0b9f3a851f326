"""Word (.docx) through python-docx: paragraphs and tables in document order, headings as the section path.

A .docx is a zip archive; it is checked before anything inflates it, so a zip bomb is refused
by its declared sizes and a file that is not a zip never reaches the XML parser.
"""

from __future__ import annotations

import io
import re

from rag.ingest.readers import SECTION_SEPARATOR, TextRecord, Unreadable, archive

KIND = "docx"
NAME = "Word (.docx) file"
SUFFIXES = (".docx",)
_HEADING = re.compile(r"^(?:heading\s*(\d)|title)$", re.IGNORECASE)


def sniff(data: bytes) -> bool:
    """A zip archive holding `word/document.xml`."""
    return archive.holds(data, "word/document.xml")


def check_archive(data: bytes) -> None:
    """Unreadable unless `data` is a sound Word zip whose members inflate to a sane size."""
    archive.check(data, "word/document.xml", "Word")


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

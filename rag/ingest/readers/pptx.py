"""PowerPoint (.pptx) through python-pptx: each slide's text in reading order, its speaker notes after it.

A slide reads title first, then its other shapes top to bottom and left to right (a group's shapes in their own
order, where the group stands); each paragraph is a line, each shape a paragraph of its own, a table one
`| cell | cell |` line per row. Footer, date and slide-number placeholders repeat on every slide and are left out.
Each slide is a section, "slide 4 · Quarterly results", and its notes another, "slide 4 · Quarterly results › notes".
"""

from __future__ import annotations

import io

from rag.ingest.readers import SECTION_SEPARATOR, TextRecord, Unreadable, archive

KIND = "pptx"
NAME = "PowerPoint (.pptx) file"
SUFFIXES = (".pptx",)
MAX_SLIDES = 5_000
"""Most slides a deck may have (a long course deck has a few hundred); a deck with more is refused, named."""
MAX_CHARACTERS = 20_000_000
"""Most characters of text a deck may hold; past it the deck is refused, named, before it fills memory."""
ROW_TOLERANCE = 182_880
"""Shapes whose tops lie within this many EMU (0.2 inch) of a row's first shape read as one row, left to right."""
MAX_TITLE_CHARS = 120
"""Longest title shown in a section label; a longer one is cut with an ellipsis (the text keeps it whole)."""


def sniff(data: bytes) -> bool:
    """A zip archive holding `ppt/presentation.xml`."""
    return archive.holds(data, "ppt/presentation.xml")


def check_archive(data: bytes) -> None:
    """Unreadable unless `data` is a sound PowerPoint zip whose members inflate to a sane size (asked of uploads too)."""
    archive.check(data, "ppt/presentation.xml", "PowerPoint")


def read(data: bytes) -> TextRecord:
    """The text of record of a .pptx: slide by slide, shapes in reading order, notes labelled after each slide."""
    check_archive(data)
    from pptx import Presentation

    try:
        slides = Presentation(io.BytesIO(data)).slides
        if len(slides) > MAX_SLIDES:
            raise Unreadable(f"{len(slides):,} slides, over the {MAX_SLIDES:,}-slide limit; split the deck")
        blocks, sections = _deck_text(slides)
    except Unreadable:
        raise
    except Exception as error:  # python-pptx raises many kinds for a damaged part
        raise Unreadable(
            f"damaged PowerPoint file ({type(error).__name__}: {error}); save it again from PowerPoint"
        ) from None
    return TextRecord(kind=KIND, text="\n\n".join(blocks), sections=tuple(sections))


def _deck_text(slides) -> tuple[list[str], list[tuple[int, str]]]:
    """The blocks of text of all slides (to be joined by blank lines) and the section each slide and its notes
    start."""
    blocks: list[str] = []
    sections: list[tuple[int, str]] = []
    length = 0
    for number, slide in enumerate(slides, start=1):
        title, body = _slide_blocks(slide)
        label = f"slide {number} · {_short(title)}" if title else f"slide {number}"
        notes = _notes(slide)
        parts = [(label, ([title] if title else []) + body)]
        if notes:
            parts.append((label + SECTION_SEPARATOR + "notes", ["Notes: " + notes]))
        for part_label, part_blocks in parts:
            if not part_blocks:
                continue
            sections.append((length, part_label))
            for block in part_blocks:
                blocks.append(block)
                length += len(block) + 2
        if length > MAX_CHARACTERS:
            raise Unreadable(f"over {MAX_CHARACTERS:,} characters of text by slide {number}; split the deck")
    return blocks, sections


def _slide_blocks(slide) -> tuple[str, list[str]]:
    """The slide's title ("" when it has none) and the text of its other shapes in reading order."""
    title_shape = slide.shapes.title
    title = " ".join(title_shape.text_frame.text.split()) if title_shape is not None else ""
    shapes = [s for s in slide.shapes if title_shape is None or s.shape_id != title_shape.shape_id]
    return title, _shape_blocks(shapes)


def _shape_blocks(shapes) -> list[str]:
    """The text of each shape, in reading order, groups opened where they stand."""
    from pptx.shapes.group import GroupShape

    blocks = []
    for shape in _reading_order(shapes):
        if isinstance(shape, GroupShape):
            blocks.extend(_shape_blocks(shape.shapes))
        elif _repeats_on_every_slide(shape):
            continue
        elif shape.has_text_frame:
            blocks.append(_lines(shape.text_frame))
        elif shape.has_table:
            blocks.append(_table(shape.table))
    return [block for block in blocks if block]


def _reading_order(shapes) -> list:
    """Shapes top to bottom, those of one row (tops within ROW_TOLERANCE) left to right; a shape without a
    position counts as at the top left."""
    placed = sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))
    rows: list[list] = []
    for shape in placed:
        if rows and (shape.top or 0) - (rows[-1][0].top or 0) <= ROW_TOLERANCE:
            rows[-1].append(shape)
        else:
            rows.append([shape])
    return [shape for row in rows for shape in sorted(row, key=lambda s: s.left or 0)]


def _repeats_on_every_slide(shape) -> bool:
    """True for footer, date and slide-number placeholders."""
    from pptx.enum.shapes import PP_PLACEHOLDER

    if not shape.is_placeholder:
        return False
    return shape.placeholder_format.type in (PP_PLACEHOLDER.FOOTER, PP_PLACEHOLDER.DATE, PP_PLACEHOLDER.SLIDE_NUMBER)


def _lines(text_frame) -> str:
    """A text frame's paragraphs (and soft line breaks) one per line, spaces collapsed, empty lines left out."""
    lines = (" ".join(line.split()) for paragraph in text_frame.paragraphs for line in paragraph.text.split("\v"))
    return "\n".join(line for line in lines if line)


def _table(table) -> str:
    """One `| cell | cell |` line per row, each cell's text on one line."""
    rows = ("| " + " | ".join(" ".join(cell.text.split()) for cell in row.cells) + " |" for row in table.rows)
    return "\n".join(row for row in rows if row.strip("| "))


def _notes(slide) -> str:
    """The slide's speaker notes, one line per paragraph, or ""."""
    if not slide.has_notes_slide:  # asking for `notes_slide` would add one
        return ""
    frame = slide.notes_slide.notes_text_frame
    return _lines(frame) if frame is not None else ""


def _short(title: str) -> str:
    return title if len(title) <= MAX_TITLE_CHARS else title[: MAX_TITLE_CHARS - 1].rstrip() + "…"

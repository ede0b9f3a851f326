"""PDF through pypdfium2 (PDFium): text with a box per character, page labels, and page rendering.

PDFium gives each character's code and box in content order. Lines are rebuilt from the boxes,
so two columns drawn line by line across the page still read column by column; running
headers, footers and page numbers are left out of the text of record (a quote can never be
made of them); words broken by an end-of-line hyphen are joined; ligatures are expanded; lines
of one paragraph are joined by a space, so a soft line break never splits a sentence.

A page's geometry is taken as PDFium shows it: the visible box is MediaBox ∩ CropBox, either inherited
from the page tree (as groff writes them), and `/Rotate` turns the page when shown. Characters outside
the visible box are not text of record; highlights go through the same box, rotation and scale as the
rendered image (PDFium ignores `/UserUnit`, and the marks, scaled to the image, follow it).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass

from rag.ingest.readers import TextRecord, Unreadable
from rag.ingest.readers.layout import Fragment, assemble, page_furniture, reading_order

KIND = "pdf"
NAME = "PDF file"
SUFFIXES = (".pdf",)
READER_VERSION = 1
"""Raised whenever this reader writes another text of record for the same bytes, so stored ones are read again
(0: unrecorded). 1: page frames are the visible box PDFium shows (an inherited MediaBox no longer reads as US
Letter), headers and footers are looked for on the real margins, and characters cropped away are left out."""
MAX_PAGE_POINTS = 14_400
"""The PDF specification's largest page side (200 inches); a larger page is a damaged or hostile file."""
MAX_PAGE_CHARS = 200_000
"""More characters than this on one page is not prose (a dense page of text holds under 10,000)."""
_LIGATURES = {chr(c) for c in range(0xFB00, 0xFB07)}
_PDFIUM = threading.Lock()
"""PDFium is not thread-safe: every call into it in one process goes through this lock."""


def sniff(data: bytes) -> bool:
    """PDF files start with `%PDF-` (readers tolerate a little junk before it)."""
    return b"%PDF-" in data[:1024]


def read(data: bytes) -> TextRecord:
    """The text of record of a PDF, or Unreadable naming why (encrypted, damaged, no text layer…)."""
    import pypdfium2 as pdfium

    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as error:
            raise Unreadable(_open_problem(str(error))) from None
        try:
            pages, labels, frames = [], [], []
            for number in range(len(document)):
                page = document[number]
                frames.append(page_geometry(page).box)
                pages.append(_fragments(page, number, frames[-1]))
                labels.append(document.get_page_label(number) or "")
        finally:
            document.close()
    if not any(f.text.strip() for page in pages for f in page):
        raise Unreadable("no text layer; scanned pages need OCR (run an OCR tool such as ocrmypdf on it first)")
    _check_character_maps(pages)
    body = [
        reading_order(fragments, frame, furniture)
        for fragments, frame, furniture in zip(pages, frames, page_furniture(pages, frames))
    ]
    text, boxes, page_starts = assemble(body)
    import numpy as np

    return TextRecord(
        kind=KIND,
        text=text,
        page_starts=tuple(page_starts),
        page_labels=tuple(labels) if any(labels) else (),
        page_frames=tuple(frames),
        reader_version=READER_VERSION,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
    )


def _open_problem(message: str) -> str:
    lowered = message.lower()
    if "password" in lowered:
        return "encrypted (password-protected) PDF; save a copy without a password to index it"
    if "security" in lowered:
        return "PDF with an unsupported security handler; save a copy without protection"
    return f"damaged or truncated PDF ({message.strip()}); save or export it again"


@dataclass(frozen=True)
class PageGeometry:
    """How PDFium shows a page: its visible box in page space and its clockwise `/Rotate`."""

    box: tuple[float, float, float, float]
    """(left, bottom, right, top): MediaBox ∩ CropBox, inherited from the page tree where the page has none."""
    rotation: int = 0

    @property
    def shown_size(self) -> tuple[float, float]:
        """Width and height of the page as shown (turned by its rotation), in page units."""
        left, bottom, right, top = self.box
        width, height = right - left, top - bottom
        return (height, width) if self.rotation in (90, 270) else (width, height)


def page_geometry(page) -> PageGeometry:
    """The visible box and rotation PDFium renders `page` with (its box getters alone ignore inherited boxes)."""
    import pypdfium2 as pdfium

    try:
        box = page.get_bbox()
    except pdfium.PdfiumError:
        box = page.get_cropbox()
    return PageGeometry(tuple(float(v) for v in box), page.get_rotation() % 360)


def to_pixels(box, geometry: PageGeometry, image_size) -> tuple[float, float, float, float]:
    """A page-space rectangle (left, bottom, right, top) as (x0, y0, x1, y1) pixels from the top-left corner of
    the page rendered at `image_size`: moved by the visible box's origin, turned by the page's rotation, scaled."""
    left, bottom, right, top = geometry.box
    x0, y0, x1, y1 = box
    across, down = {  # distances from the shown page's left and top edges, in page units
        0: ((x0 - left, x1 - left), (top - y1, top - y0)),
        90: ((y0 - bottom, y1 - bottom), (x0 - left, x1 - left)),
        180: ((right - x1, right - x0), (y0 - bottom, y1 - bottom)),
        270: ((top - y1, top - y0), (right - x1, right - x0)),
    }[geometry.rotation]
    width, height = geometry.shown_size
    sx, sy = image_size[0] / max(width, 1e-6), image_size[1] / max(height, 1e-6)
    return (across[0] * sx, down[0] * sy, across[1] * sx, down[1] * sy)


def _fragments(page, number: int, frame) -> list[Fragment]:
    """The page's visible characters grouped into line fragments, in PDFium's order."""
    import numpy as np
    import pypdfium2.raw as raw

    width, height = page.get_size()
    if width > MAX_PAGE_POINTS or height > MAX_PAGE_POINTS:
        raise Unreadable(
            f"page {number + 1} is {width:,.0f} × {height:,.0f} points, beyond the PDF limit of "
            f"{MAX_PAGE_POINTS:,}; the file is damaged or not a document"
        )
    textpage = page.get_textpage()
    try:
        count = textpage.count_chars()
        if count > MAX_PAGE_CHARS:
            raise Unreadable(
                f"page {number + 1} holds {count:,} characters, over {MAX_PAGE_CHARS:,}; not a readable page"
            )
        if count <= 0:
            return []
        text = textpage.get_text_range(0, count)
        handle, rect, get_box = textpage.raw, raw.FS_RECTF(), raw.FPDFText_GetLooseCharBox
        if len(text) != count:  # PDFium left out or put in characters: ask for each one
            text = "".join(chr(raw.FPDFText_GetUnicode(handle, i) or 0xFFFD) for i in range(count))
        flat = []
        for index in range(count):
            if not get_box(handle, index, rect):
                rect.left = rect.right = rect.bottom = rect.top = 0.0
            flat += (rect.left, rect.bottom, rect.right, rect.top)
    finally:
        textpage.close()
    boxes = np.asarray(flat, dtype=np.float64).reshape(count, 4)
    return _split_fragments(number, text, boxes, _outside(boxes, frame))


def _outside(boxes, frame):
    """Characters drawn with their centre outside the visible box (cropped away: no viewer shows them)."""
    left, bottom, right, top = frame
    x, y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    drawn = (boxes[:, 2] > boxes[:, 0]) | (boxes[:, 3] > boxes[:, 1])
    return drawn & ((x < left) | (x > right) | (y < bottom) | (y > top))


def _split_fragments(number: int, text: str, boxes, hidden=None) -> list[Fragment]:
    """Cut the page's characters into fragments where the next one is not on the same line of the same column;
    characters marked `hidden` are left out."""
    import numpy as np

    text = text.replace("\ufffe", "\x02")  # FPDFText_GetText writes PDFium's line-end hyphen mark as U+FFFE
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    spaces = np.isin(codes, (0x20, 0x09, 0xA0))
    width = boxes[:, 2] - boxes[:, 0]
    keep = (codes >= 0x20) | (codes == 0x02) | (codes == 0x09)
    keep &= ~(spaces & (width <= 0.01))  # PDFium's own word breaks: the gaps decide instead
    keep &= codes != 0xFFFF
    if hidden is not None:
        keep &= ~hidden
    index = np.nonzero(keep)[0]
    if not len(index):
        return []
    chars = codes[index].tobytes().decode("utf-32-le").replace("\t", " ")
    box = boxes[index]
    h = np.maximum(box[:, 3] - box[:, 1], 0.1)
    previous = np.roll(box, 1, axis=0)
    ph = np.roll(h, 1)
    gap = box[:, 0] - previous[:, 2]
    cut = (np.abs(box[:, 1] - previous[:, 1]) > 0.5 * ph) | (box[:, 0] < previous[:, 0] - 0.2 * ph) | (gap > 1.2 * ph)
    cut[0] = True
    is_space = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32) == 0x20
    word_gap = (gap > 0.15 * ph) & ~is_space & ~np.roll(is_space, 1) & ~cut  # a word gap drawn without a space
    gap_at = np.nonzero(word_gap)[0]  # a space goes in before each of these characters, for the whole page at once
    bounds = [0, *gap_at.tolist(), len(chars)]
    spaced = " ".join(chars[i:j] for i, j in zip(bounds, bounds[1:]))
    spaced_boxes = np.insert(box, gap_at, np.nan, axis=0)
    starts = np.nonzero(cut)[0]
    starts = (starts + np.searchsorted(gap_at, starts)).tolist() + [len(spaced)]
    fragments = []
    for a, b in zip(starts, starts[1:]):
        fragment_text, fragment_boxes = _clean(spaced[a:b], spaced_boxes[a:b])
        if fragment_text.strip():
            fragments.append(Fragment(number, fragment_text, fragment_boxes))
    return fragments


def _clean(text: str, boxes):
    """A fragment without leading/trailing spaces, with ligatures expanded and PDFium's hyphen marks resolved."""
    import numpy as np

    stripped = text.lstrip(" ")
    start = len(text) - len(stripped)
    stripped = stripped.rstrip(" ")
    text, boxes = stripped, boxes[start : start + len(stripped)]
    if (
        "\x02" in text
    ):  # PDFium marks a hyphen it takes for a line-end hyphen: a plain hyphen at the end, dropped inside
        keep = [i for i, ch in enumerate(text) if ch != "\x02" or i == len(text) - 1]
        text = "".join("-" if text[i] == "\x02" else text[i] for i in keep)
        boxes = boxes[keep]
    if any(ch in _LIGATURES for ch in text):
        pieces, rows = [], []
        for ch, row in zip(text, boxes):
            expanded = unicodedata.normalize("NFKC", ch) if ch in _LIGATURES else ch
            pieces.append(expanded)
            rows.extend([row] * len(expanded))
        text, boxes = "".join(pieces), np.asarray(rows)
    return text, boxes


def _check_character_maps(pages) -> None:
    """Unreadable when the text is mostly unmapped glyphs (fonts without a character map)."""
    text = "".join(f.text for page in pages for f in page)
    letters = len(text) - text.count(" ")
    unmapped = len(re.findall("[\ufffd\ue000-\uf8ff]", text))
    if letters and unmapped > 0.3 * letters:
        raise Unreadable("its fonts map glyphs to no characters, so its text cannot be read reliably; OCR it")


def render_page(data: bytes, page_number: int, boxes, max_pixels: int = 1400) -> bytes:
    """PNG of one page (1-based) as PDFium shows it, with `boxes` (page space, as stored) highlighted in yellow."""
    import io

    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    with _PDFIUM:
        document = pdfium.PdfDocument(data)
        try:
            page = document[page_number - 1]
            geometry = page_geometry(page)
            scale = min(2.0, max_pixels / max(*page.get_size(), 1.0))
            image = page.render(scale=scale).to_pil().convert("RGB")
        finally:
            document.close()
    if boxes:
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for rectangle in highlight_rectangles(boxes, geometry, image.size):
            draw.rectangle(rectangle, fill=(255, 214, 0, 110), outline=(230, 140, 0, 255), width=1)
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def highlight_rectangles(boxes, geometry: PageGeometry, image_size) -> list[tuple[float, float, float, float]]:
    """The rectangles `render_page` draws for character `boxes`: one per run on a line, in image pixels."""
    return [to_pixels(rectangle, geometry, image_size) for rectangle in line_rectangles(boxes)]


def line_rectangles(boxes) -> list[tuple[float, float, float, float]]:
    """Character boxes merged into one rectangle per run on a line, in reading order."""
    rectangles: list[list[float]] = []
    for x0, y0, x1, y1 in boxes:
        last = rectangles[-1] if rectangles else None
        if last and abs(y0 - last[1]) < 0.5 * (y1 - y0) and x0 >= last[0] - 0.5 and x0 - last[2] < 1.2 * (y1 - y0):
            last[0], last[1], last[2], last[3] = min(last[0], x0), min(last[1], y0), max(last[2], x1), max(last[3], y1)
        else:
            rectangles.append([x0, y0, x1, y1])
    return [tuple(r) for r in rectangles]

"""PDF through pypdfium2 (PDFium): text with a box per character, page labels, and page rendering.

PDFium gives each character's code and box in content order. Lines are rebuilt from the boxes,
so two columns drawn line by line across the page still read column by column; running
headers, footers and page numbers are left out of the text of record (a quote can never be
made of them); words broken by an end-of-line hyphen are joined; ligatures are expanded; lines
of one paragraph are joined by a space, so a soft line break never splits a sentence. A table's rows (three
columns or more, ruled or not) become lines `| cell | cell | cell |` of their own (`rag.ingest.readers.tables`).

A page's geometry is taken as PDFium shows it: the visible box is MediaBox ∩ CropBox, either inherited
from the page tree (as groff writes them), and `/Rotate` turns the page when shown. Characters outside
the visible box are not text of record; highlights go through the same box, rotation and scale as the
rendered image (PDFium ignores `/UserUnit`, and the marks, scaled to the image, follow it).

A page that draws a picture and has no text layer (a scan) is rendered at 300 dpi and read by OCR
(`rag.ingest.readers.ocr`), upright as shown and straightened; its characters' boxes are turned back into page
space, so its quotes are marked like typeset ones. A PDF that mixes typeset and scanned pages reads both.
"""

from __future__ import annotations

import re
import threading
import unicodedata

from rag.ingest.readers import TextRecord, Unreadable, report
from rag.ingest.readers.layout import Fragment, assemble, page_furniture, reading_order
from rag.ingest.readers.marks import PageGeometry, draw_marks
from rag.ingest.readers.tables import with_rows

KIND = "pdf"
NAME = "PDF file"
SUFFIXES = (".pdf",)
READER_VERSION = 2
"""Raised whenever this reader writes another text of record for the same bytes, so stored ones are read again
(0: unrecorded). 1: page frames are the visible box PDFium shows (an inherited MediaBox no longer reads as US
Letter), headers and footers are looked for on the real margins, and characters cropped away are left out.
2: pages without a text layer are read by OCR (files skipped as scans before are read again), and a table's rows
are lines of their own."""
USES_OCR = True
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


def read(data: bytes, ocr=None) -> TextRecord:
    """The text of record of a PDF, or Unreadable naming why (encrypted, damaged, no text…); pages without a text
    layer (scans) are recognised by OCR under `ocr` (`rag.ingest.readers.ocr.Options`)."""
    import pypdfium2 as pdfium

    with _PDFIUM:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as error:
            raise Unreadable(_open_problem(str(error))) from None
        try:
            pages, labels, geometries, scanned = [], [], [], []
            for number in range(len(document)):
                page = document[number]
                geometries.append(page_geometry(page))
                pages.append(with_rows(_fragments(page, number, geometries[-1].box), geometries[-1].box))
                labels.append(document.get_page_label(number) or "")
                if _scanned(page, pages[-1]):
                    scanned.append(number)
            layout_frames = [g.box for g in geometries]
            if scanned:
                from rag.ingest.readers import ocr as engine

                options = ocr or engine.Options()
                engine.check_budget(len(scanned), options)
            places = {}
            for count, number in enumerate(scanned):
                report(f"OCR page {count + 1} of {len(scanned)}")
                image = document[number].render(scale=engine.OCR_DPI / 72).to_pil()
                pages[number], layout_frames[number], places[number] = engine.read_page(
                    image, number, geometries[number], options
                )
        finally:
            document.close()
    if not any(f.text.strip() for page in pages for f in page):
        raise Unreadable("no text in it: its pages hold neither a text layer nor pictures of text")
    _check_character_maps([page for number, page in enumerate(pages) if number not in scanned])
    body = [
        reading_order(fragments, frame, furniture)
        for fragments, frame, furniture in zip(pages, layout_frames, page_furniture(pages, layout_frames))
    ]
    text, boxes, page_starts = assemble(body)
    import numpy as np

    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if places:
        engine.place_pages(boxes, page_starts, places)
    return TextRecord(
        kind=KIND,
        text=text,
        page_starts=tuple(page_starts),
        page_labels=tuple(labels) if any(labels) else (),
        page_frames=tuple(g.box for g in geometries),
        reader_version=READER_VERSION,
        boxes=boxes,
    )


MIN_LAYER_CHARS = 10
"""A page with a picture and fewer characters of text than this is a scan (a stamped page number is no text
layer); it is read by OCR."""


def _scanned(page, fragments) -> bool:
    """Whether a page is a picture of text: it draws an image and has no text layer to speak of."""
    import pypdfium2.raw as raw

    if sum(len(f.text.replace(" ", "")) for f in fragments) >= MIN_LAYER_CHARS:
        return False
    return next(page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE], max_depth=4), None) is not None


def _open_problem(message: str) -> str:
    lowered = message.lower()
    if "password" in lowered:
        return "encrypted (password-protected) PDF; save a copy without a password to index it"
    if "security" in lowered:
        return "PDF with an unsupported security handler; save a copy without protection"
    return f"damaged or truncated PDF ({message.strip()}); save or export it again"


def page_geometry(page) -> PageGeometry:
    """The visible box and rotation PDFium renders `page` with (its box getters alone ignore inherited boxes)."""
    import pypdfium2 as pdfium

    try:
        box = page.get_bbox()
    except pdfium.PdfiumError:
        box = page.get_cropbox()
    return PageGeometry(tuple(float(v) for v in box), page.get_rotation() % 360)


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
    import pypdfium2 as pdfium

    with _PDFIUM:
        document = pdfium.PdfDocument(data)
        try:
            page = document[page_number - 1]
            geometry = page_geometry(page)
            scale = min(2.0, max_pixels / max(*page.get_size(), 1.0))
            image = page.render(scale=scale).to_pil()
        finally:
            document.close()
    return draw_marks(image, boxes, geometry)

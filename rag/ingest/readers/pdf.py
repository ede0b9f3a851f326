"""PDF through pypdfium2 (PDFium): text with a box per character, page labels, and page rendering.

PDFium gives each character's code and box in content order. Lines are rebuilt from the boxes,
so two columns drawn line by line across the page still read column by column; running
headers, footers and page numbers are left out of the text of record (a quote can never be
made of them); words broken by an end-of-line hyphen are joined; ligatures are expanded; lines
of one paragraph are joined by a space, so a soft line break never splits a sentence.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass

from rag.ingest.readers import TextRecord, Unreadable

KIND = "pdf"
NAME = "PDF file"
SUFFIXES = (".pdf",)
MAX_PAGE_POINTS = 14_400
"""The PDF specification's largest page side (200 inches); a larger page is a damaged or hostile file."""
MAX_PAGE_CHARS = 200_000
"""More characters than this on one page is not prose (a dense page of text holds under 10,000)."""
MARGIN_SHARE = 0.09
"""Top and bottom share of a page where running headers, footers and page numbers are looked for."""
_LIGATURES = {chr(c) for c in range(0xFB00, 0xFB07)}
_HYPHENS = "-\u00ad\u2010\x02"
_TERMINAL = tuple('.!?:;"”’)')
_PAGE_NUMBER = re.compile(r"^(?:page\s*)?(?:#|[ivxlcdm]+)(?:\s*(?:of|/)\s*#)?$|^[-–—]\s*#\s*[-–—]$")
_PDFIUM = threading.Lock()
"""PDFium is not thread-safe: every call into it in one process goes through this lock."""


def sniff(data: bytes) -> bool:
    """PDF files start with `%PDF-` (readers tolerate a little junk before it)."""
    return b"%PDF-" in data[:1024]


@dataclass
class Fragment:
    """Characters drawn one after another on one baseline: a line of one column.

    `boxes[i]` is the box of `text[i]` (NaN for a space the reader put in).
    """

    page: int
    text: str
    boxes: object
    column: str = "S"

    def __post_init__(self):
        import numpy as np

        drawn = self.boxes[~np.isnan(self.boxes[:, 0])]
        self.left, self.bottom = float(drawn[:, 0].min()), float(drawn[:, 1].min())
        self.right, self.top = float(drawn[:, 2].max()), float(drawn[:, 3].max())
        self.height = max(_median((drawn[:, 3] - drawn[:, 1]).tolist()), 0.1)  # accents must not count


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
                frames.append(tuple(float(v) for v in page.get_cropbox()))
                pages.append(_fragments(page, number))
                labels.append(document.get_page_label(number) or "")
        finally:
            document.close()
    if not any(f.text.strip() for page in pages for f in page):
        raise Unreadable("no text layer; scanned pages need OCR (run an OCR tool such as ocrmypdf on it first)")
    _check_character_maps(pages)
    body = [
        _order(fragments, frame, furniture)
        for fragments, frame, furniture in zip(pages, frames, _furniture(pages, frames))
    ]
    text, boxes, page_starts = _assemble(body)
    import numpy as np

    return TextRecord(
        kind=KIND,
        text=text,
        page_starts=tuple(page_starts),
        page_labels=tuple(labels) if any(labels) else (),
        page_frames=tuple(frames),
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
    )


def _open_problem(message: str) -> str:
    lowered = message.lower()
    if "password" in lowered:
        return "encrypted (password-protected) PDF; save a copy without a password to index it"
    if "security" in lowered:
        return "PDF with an unsupported security handler; save a copy without protection"
    return f"damaged or truncated PDF ({message.strip()}); save or export it again"


def _fragments(page, number: int) -> list[Fragment]:
    """The page's characters grouped into line fragments, in PDFium's order."""
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
    return _split_fragments(number, text, boxes)


def _split_fragments(number: int, text: str, boxes) -> list[Fragment]:
    """Cut the page's characters into fragments where the next one is not on the same line of the same column."""
    import numpy as np

    text = text.replace("\ufffe", "\x02")  # FPDFText_GetText writes PDFium's line-end hyphen mark as U+FFFE
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    spaces = np.isin(codes, (0x20, 0x09, 0xA0))
    width = boxes[:, 2] - boxes[:, 0]
    keep = (codes >= 0x20) | (codes == 0x02) | (codes == 0x09)
    keep &= ~(spaces & (width <= 0.01))  # PDFium's own word breaks: the gaps decide instead
    keep &= codes != 0xFFFF
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


def _key(fragment: Fragment) -> str:
    return re.sub(r"\d+", "#", " ".join(fragment.text.split()).lower())


def _furniture(pages, frames) -> list[set[int]]:
    """Per page, the ids of fragments that are running headers, footers or page numbers."""
    candidates = []
    for fragments, (_, bottom, _, top) in zip(pages, frames):
        zone = MARGIN_SHARE * (top - bottom)
        candidates.append([f for f in fragments if f.bottom >= top - zone or f.top <= bottom + zone])
    seen: dict[str, int] = {}
    for page in candidates:
        for key in {_key(f) for f in page}:
            seen[key] = seen.get(key, 0) + 1
    repeats = 2 if len(pages) > 1 else 10**9
    return [{id(f) for f in page if _PAGE_NUMBER.match(_key(f)) or seen[_key(f)] >= repeats} for page in candidates]


def _order(fragments: list[Fragment], frame, furniture: set[int]) -> list[Fragment]:
    """The page's body fragments in reading order: column by column where the page has two."""
    body = [f for f in fragments if id(f) not in furniture]
    quantum = max(_median([f.height for f in body]) * 0.5, 0.1)  # one row height for the whole page
    by_row = sorted(body, key=lambda f: (-round(f.bottom / quantum), f.left))
    gutter = _gutter(body, frame)
    if gutter is None:
        return by_row
    ordered, band = [], []
    for fragment in by_row:
        if fragment.left < gutter < fragment.right:
            fragment.column = "F"
            ordered += _band(band, gutter)
            ordered.append(fragment)
            band = []
        else:
            band.append(fragment)
    return ordered + _band(band, gutter)


def _band(fragments: list[Fragment], gutter: float) -> list[Fragment]:
    left = [f for f in fragments if f.right <= gutter]
    right = [f for f in fragments if f.left >= gutter]
    for f in left:
        f.column = "L"
    for f in right:
        f.column = "R"
    return left + right


def _gutter(body: list[Fragment], frame) -> float | None:
    """The x of an empty vertical band near the middle with lines on both sides, or None (one column)."""
    if len(body) < 4:
        return None
    import numpy as np

    left, _, right, _ = frame
    width = right - left
    xs = left + width * (0.3 + 0.4 * np.arange(81) / 80)
    lefts, rights = np.array([f.left for f in body]), np.array([f.right for f in body])
    crossings = ((lefts[None, :] < xs[:, None]) & (xs[:, None] < rights[None, :])).sum(axis=1)
    best = min(range(len(xs)), key=lambda i: (crossings[i], abs(xs[i] - (left + width / 2))))
    crossing, x = int(crossings[best]), float(xs[best])
    on_left = [f for f in body if f.right <= x]
    on_right = [f for f in body if f.left >= x]
    if crossing > 0.15 * len(body) or len(on_left) < 2 or len(on_right) < 2:
        return None
    # columns hold lines, not scattered words: their typical line fills a good part of the column
    left_width = x - min(f.left for f in on_left)
    right_width = max(f.right for f in on_right) - x
    if (
        _median([f.right - f.left for f in on_left]) < 0.4 * left_width
        or _median([f.right - f.left for f in on_right]) < 0.4 * right_width
    ):
        return None
    return x


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def _assemble(pages: list[list[Fragment]]):
    """Text of record, one box per character, and the offset where each page begins."""
    import numpy as np

    everything = [f for page in pages for f in page]
    joined = " ".join(f.text for f in everything).lower()
    words, compounds = Counter(re.findall(r"\w+", joined)), set(re.findall(r"\w+-\w+", joined))
    edges = _column_edges(everything)
    texts: list[str] = []
    boxes: list = []
    page_starts = []
    length = 0
    tail = ""  # the last characters written, for the joints
    previous = None
    for number, fragments in enumerate(pages):
        for fragment in fragments:
            if previous is not None:
                joint = _joint(previous, fragment, edges, tail, words, compounds)
                if joint == "hyphen":
                    texts[-1], boxes[-1] = texts[-1][:-1], boxes[-1][:-1]
                    length -= 1
                elif joint:
                    texts.append(joint)
                    boxes.append(np.full((len(joint), 4), np.nan))
                    length += len(joint)
            while len(page_starts) <= number:
                page_starts.append(length)
            texts.append(fragment.text)
            boxes.append(fragment.boxes)
            length += len(fragment.text)
            tail = fragment.text[-30:]
            previous = fragment
        while len(page_starts) <= number:
            page_starts.append(length)
    stacked = np.vstack(boxes) if boxes else np.zeros((0, 4))
    return "".join(texts), stacked, page_starts


def _column_edges(fragments: list[Fragment]) -> dict:
    """(page, column) → (left edge, right edge) of the text in that column."""
    edges: dict = {}
    for f in fragments:
        key = (f.page, f.column)
        left, right = edges.get(key, (f.left, f.right))
        edges[key] = (min(left, f.left), max(right, f.right))
    return edges


def _joint(previous: Fragment, current: Fragment, edges, tail: str, words, compounds):
    """What goes between two fragments: "\\n\\n" (new paragraph), " " (same paragraph) or "hyphen"."""
    h = previous.height
    left, right = edges[(previous.page, previous.column)]
    c_left, _ = edges[(current.page, current.column)]
    ends = tail.rstrip()
    full = previous.right >= right - 2.5 * h
    indented = current.left > c_left + 0.8 * h
    same_flow = previous.page == current.page and previous.column == current.column
    if abs(current.height - h) > 0.15 * h:
        return "\n\n"  # a size change: heading or caption
    if same_flow and abs(current.bottom - previous.bottom) < 0.3 * h and current.left >= previous.right:
        return " "  # the same line, cut by a wide justified word gap
    if same_flow:
        gap = previous.bottom - current.top
        if gap > 0.6 * h or current.bottom > previous.bottom:
            return "\n\n"
        if indented and full:
            return "\n\n"
        if ends.endswith(_TERMINAL) and not full:
            return "\n\n"
    elif (ends.endswith(_TERMINAL) and not full) or ((not full or indented) and not current.text[0].islower()):
        return "\n\n"  # a column or page ends with its paragraph (a full last line runs on, sentence or not)
    if ends and ends[-1] in _HYPHENS and len(ends) > 1 and ends[-2].isalpha() and current.text[0].isalpha():
        return _line_end_hyphen(ends, current.text, words, compounds)
    return " "


_SUSPENDING = frozenset("and or nor to und oder et ou".split())
"""Words after a suspended hyphen ("English- and German-speaking"), where the hyphen and a space stay."""


def _line_end_hyphen(ends: str, following: str, words, compounds) -> str:
    """ "hyphen" (drop it and join the word), "" (a compound: keep it, no space) or " " (a suspended hyphen).

    The document itself decides where it can: a word seen whole elsewhere is joined, a compound
    seen hyphenated elsewhere keeps its hyphen; otherwise a lower-case continuation is joined.
    """
    left, right = re.findall(r"\w+$", ends[:-1]), re.match(r"\w+", following)
    if not left or not right:
        return "hyphen"
    left, right = left[0].lower(), right.group().lower()
    if words.get(left + right, 0) >= 1:
        return "hyphen"
    if f"{left}-{right}" in compounds:
        return ""
    if right in _SUSPENDING and words.get(left, 0) >= 2:
        return " "
    return "hyphen" if following[0].islower() else ""


def render_page(data: bytes, page_number: int, boxes, max_pixels: int = 1400) -> bytes:
    """PNG of one page (1-based) with `boxes` (PDF units, as stored) highlighted in yellow."""
    import io

    import pypdfium2 as pdfium
    from PIL import Image, ImageDraw

    with _PDFIUM:
        document = pdfium.PdfDocument(data)
        try:
            page = document[page_number - 1]
            left, bottom, right, top = page.get_cropbox()
            rotation = page.get_rotation()
            scale = min(2.0, max_pixels / max(right - left, top - bottom))
            image = page.render(scale=scale).to_pil().convert("RGB")
        finally:
            document.close()
    if rotation == 0 and boxes:
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for x0, y0, x1, y1 in line_rectangles(boxes):
            draw.rectangle(
                [(x0 - left) * scale, (top - y1) * scale, (x1 - left) * scale, (top - y0) * scale],
                fill=(255, 214, 0, 110),
                outline=(230, 140, 0, 255),
                width=1,
            )
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


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

"""Reading order from character boxes: lines rebuilt into columns and paragraphs, running headers, footers and
page numbers left out, end-of-line hyphens joined. Shared by every reader whose source is a page of positioned
characters (a PDF's text layer, a recognised scan)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from rag.ingest.readers.rows import ROW_SEPARATOR

HYPHENS = "-\u00ad\u2010\x02"
"""Characters that may end a line inside a broken word (the soft hyphen, PDFium's \x02 among them)."""
MARGIN_SHARE = 0.09
"""Top and bottom share of a page where running headers, footers and page numbers are looked for."""
SET_APART = 1.5
"""A line nearest the top or bottom edge whose gap to the text beyond it passes this many line heights is set apart
from the body (a paragraph break leaves under one), so it is looked at as a header or footer too."""
_TERMINAL = tuple('.!?:;"”’)')
_PAGE_NUMBER = re.compile(r"^(?:page\s*)?(?:#|[ivxlcdm]+)(?:\s*(?:of|/)\s*#)?$|^[-–—]\s*#\s*[-–—]$")


@dataclass
class Fragment:
    """Characters drawn one after another on one baseline: a line of one column.

    `boxes[i]` is the box of `text[i]` (NaN for a space the reader put in). A table's `row` is a paragraph of its
    own (`rag.ingest.readers.tables`).
    """

    page: int
    text: str
    boxes: object
    column: str = "S"
    row: bool = False

    def __post_init__(self):
        import numpy as np

        drawn = self.boxes[~np.isnan(self.boxes[:, 0])]
        self.left, self.bottom = float(drawn[:, 0].min()), float(drawn[:, 1].min())
        self.right, self.top = float(drawn[:, 2].max()), float(drawn[:, 3].max())
        self.height = max(_median((drawn[:, 3] - drawn[:, 1]).tolist()), 0.1)  # accents must not count


def _key(fragment: Fragment) -> str:
    return re.sub(r"\d+", "#", " ".join(fragment.text.split()).lower())


def page_furniture(pages, frames) -> list[set[int]]:
    """Per page, the ids of fragments that are running headers, footers or page numbers."""
    candidates = [_margin_lines(fragments, frame) for fragments, frame in zip(pages, frames)]
    seen: dict[str, int] = {}
    for page in candidates:
        for key in {_key(f) for f in page}:
            seen[key] = seen.get(key, 0) + 1
    repeats = 2 if len(pages) > 1 else 10**9
    furniture = []
    for page in candidates:
        numbers = [f for f in page if _PAGE_NUMBER.match(_key(f))]
        furniture.append(
            {
                id(f)
                for f in page
                if seen[_key(f)] >= repeats or any(abs(f.bottom - n.bottom) < 0.5 * n.height for n in numbers)
            }
        )
    return furniture  # a page number, a line seen on two pages, and what shares a margin line with a page number


def _margin_lines(fragments: list[Fragment], frame) -> list[Fragment]:
    """Lines in the page's top or bottom margin: within MARGIN_SHARE of the edge, or the line nearest the edge
    within twice that when a gap of over SET_APART line heights parts it from the text (a footer an inch up)."""
    _, bottom, _, top = frame
    zone = MARGIN_SHARE * (top - bottom)
    found = {id(f): f for f in fragments if f.bottom >= top - zone or f.top <= bottom + zone}
    for depth in (lambda y: top - y, lambda y: y - bottom):  # how far in from the top edge; from the bottom edge
        ordered = sorted(fragments, key=lambda f: depth((f.bottom + f.top) / 2))
        if not ordered or depth((ordered[0].bottom + ordered[0].top) / 2) > 2 * zone:
            continue
        first = ordered[0]
        line = [f for f in ordered if abs(f.bottom - first.bottom) < 0.5 * first.height]
        rest = [f for f in ordered if abs(f.bottom - first.bottom) >= 0.5 * first.height]
        line_depth = max(max(depth(f.bottom), depth(f.top)) for f in line)
        if rest and min(min(depth(f.bottom), depth(f.top)) for f in rest) - line_depth > SET_APART * first.height:
            found.update((id(f), f) for f in line)
    return list(found.values())


def reading_order(fragments: list[Fragment], frame, furniture: set[int]) -> list[Fragment]:
    """The page's body fragments in reading order: column by column where the page has two."""
    body = [f for f in fragments if id(f) not in furniture]
    quantum = max(_median([f.height for f in body]) * 0.5, 0.1)  # one row height for the whole page
    by_row = sorted(body, key=lambda f: (-round(f.bottom / quantum), f.left))
    gutter = find_gutter(body, frame)
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


def find_gutter(body: list[Fragment], frame) -> float | None:
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


def assemble(pages: list[list[Fragment]]):
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
    if previous.row or current.row:
        return ROW_SEPARATOR  # a table's row is read whole, alone
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
    if ends and ends[-1] in HYPHENS and len(ends) > 1 and ends[-2].isalpha() and current.text[0].isalpha():
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

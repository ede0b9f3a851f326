"""Optical character recognition: the text of a picture of a page, with a box for every character.

Two engines stand behind one call, `recognise(image, options)`:
- `tesseract`: Debian's `tesseract-ocr` 5 through its TSV output (apt install tesseract-ocr); it gives a box per
  word, which is shared among the word's characters by their count.
- `rapidocr`: RapidOCR's PP-OCR detection and recognition models, run by ONNX Runtime from the wheel's own files
  (the `ocr` extra, which `make chat` installs); it gives a box per character.
`auto` (the default) takes tesseract where it is installed and RapidOCR elsewhere: tesseract read scanned pages
with about half RapidOCR's character errors and, on clean pages, faster. Tesseract runs on one thread: its OpenMP
threads beside the build's two readers made a page six times slower on 2 cores.
bench/ocr_quality.py measured both (character error rate and pages per second); docs/decisions.md says why the
default is the default. An engine is loaded once per reader process, when the first scanned page needs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from rag.ingest.readers import Unreadable
from rag.ingest.readers.layout import Fragment
from rag.ingest.readers.marks import PageGeometry, from_pixels, to_pixels

OCR_DPI = 300
"""Resolution a PDF page without a text layer is rendered at for recognition."""
MIN_SCORE = 0.5
"""Lines the engine recognises with less confidence than this are left out (noise, stains, pictures)."""


@dataclass(frozen=True)
class Options:
    """How scanned pages are read: the engine (RAG_OCR) and the most pages one file may have recognised
    (RAG_OCR_PAGES: a budget, since a page takes seconds)."""

    engine: str = "auto"
    max_pages: int = 500

    @property
    def chosen(self) -> str:
        """The engine that reads: `auto` is tesseract where it is installed, RapidOCR elsewhere."""
        if self.engine != "auto":
            return self.engine
        return "tesseract" if shutil.which("tesseract") else "rapidocr"


def problem(options: Options) -> str:
    """Why scanned pages cannot be read with `options` ("" when they can), naming the fix."""
    if options.engine == "off":
        return "its pages are scanned images and OCR is off (RAG_OCR=off); set RAG_OCR=auto to read them"
    if options.engine == "tesseract" and shutil.which("tesseract") is None:
        return (
            "its pages are scanned images and RAG_OCR=tesseract, but tesseract is not installed; "
            "apt install tesseract-ocr, or set RAG_OCR=rapidocr"
        )
    if options.chosen == "rapidocr":
        try:
            import rapidocr  # noqa: F401
        except ImportError:
            return (
                "its pages are scanned images and no OCR engine is installed; "
                "pip install 'rag[ocr]' (make chat installs it), or apt install tesseract-ocr"
            )
    return ""


def check_budget(pages: int, options: Options) -> None:
    """Unreadable when a file needs more pages recognised than the budget allows (or OCR cannot run)."""
    reason = problem(options)
    if reason:
        raise Unreadable(reason)
    if pages > options.max_pages:
        raise Unreadable(
            f"{pages:,} of its pages are scanned images, over the OCR budget of {options.max_pages:,} pages a file "
            f"(RAG_OCR_PAGES); raise it to read this file"
        )


SKEW_LIMIT = 4.0
"""Largest tilt, in degrees either way, that a scan is straightened from (a page fed crooked is tilted 1–2°)."""
LINE_SPREAD = 0.35
"""Lines within this share of the page's median line height are taken as one type size (see `_even`)."""


def read_page(image, page: int, geometry: PageGeometry, options: Options):
    """The lines recognised in a PIL `image` of page `page` (0-based), which shows the page as `geometry` does.

    Returns (fragments, frame, place): the fragments lie on the page as shown, upright, straightened and with the
    top-left corner at the origin, the space the layout reads them in (`frame` is its box); `place(boxes)` turns
    an array of their characters' boxes, in place, into boxes in the page's own space, where they are stored.
    """
    from PIL import Image

    angle = skew(image)
    straight = image.rotate(-angle, resample=Image.Resampling.BICUBIC, fillcolor="white") if angle else image
    width, height = geometry.shown_size
    shown = PageGeometry((0.0, 0.0, width, height))
    lines = _even(recognise(straight, options))
    found = []
    for text, pixel_boxes in lines:
        boxes = np.full((len(text), 4), np.nan, dtype=np.float64)
        for at, box in enumerate(pixel_boxes):
            if box is not None:
                boxes[at] = from_pixels(box, shown, image.size)
        if not np.isnan(boxes[:, 0]).all():
            found.append(Fragment(page, text, boxes))

    def place(boxes):
        for row in boxes:
            if row[0] == row[0]:  # not NaN: a character's box
                pixels = _turned(to_pixels(tuple(row), shown, image.size), angle, image.size)
                row[:] = from_pixels(pixels, geometry, image.size)
        return boxes

    return found, shown.box, place


def place_pages(boxes, page_starts, places: dict) -> None:
    """Run each recognised page's `place` (from `read_page`, by 0-based page number) over that page's characters in
    `boxes`, the assembled text of record's boxes: from the straightened page as shown back to the page's space."""
    ends = [*page_starts[1:], len(boxes)]
    for number, place in places.items():
        place(boxes[page_starts[number] : ends[number]])


def skew(image) -> float:
    """The angle, in degrees counter-clockwise, by which the lines of a scan lean: the turn under which the rows
    of dark pixels stand out most sharply (a projection profile, on a small copy), 0 when none is clear."""
    from PIL import Image

    small = image.convert("L")
    small.thumbnail((1000, 1000))
    dark = small.point(lambda v: 255 if v < 128 else 0)
    if not np.asarray(dark).any():
        return 0.0

    def sharpness(angle: float) -> float:
        rows = np.asarray(dark.rotate(-angle, resample=Image.Resampling.NEAREST), dtype=np.float64).sum(axis=1)
        return float(np.square(np.diff(rows)).sum())

    coarse = max(np.arange(-SKEW_LIMIT, SKEW_LIMIT + 0.01, 0.5), key=sharpness)
    fine = max(np.arange(coarse - 0.4, coarse + 0.41, 0.1), key=sharpness)
    return round(float(fine), 2) if abs(fine) >= 0.15 else 0.0


def _turned(pixels, angle: float, size) -> tuple[float, float, float, float]:
    """The upright rectangle around `pixels` (x0, y0, x1, y1) turned by `angle` degrees counter-clockwise about the
    picture's centre: where a box of the straightened picture lies on the picture as scanned."""
    if not angle:
        return pixels
    import math

    cx, cy = size[0] / 2, size[1] / 2
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    xs, ys = [], []
    for x, y in ((pixels[0], pixels[1]), (pixels[2], pixels[1]), (pixels[0], pixels[3]), (pixels[2], pixels[3])):
        xs.append(cx + (x - cx) * c + (y - cy) * s)
        ys.append(cy - (x - cx) * s + (y - cy) * c)
    return (min(xs), min(ys), max(xs), max(ys))


def _even(lines: list[tuple[str, list]]) -> list[tuple[str, list]]:
    """Lines of one type size made one height, centred where they were: an engine's boxes follow each line's
    ascenders and descenders, which the layout would read as changes of size (new paragraphs). A line further
    than LINE_SPREAD from the page's median height (a heading) keeps its own."""
    spans = [next((b for b in boxes if b is not None), None) for _, boxes in lines]
    heights = sorted(b[3] - b[1] for b in spans if b is not None)
    if not heights:
        return lines
    median = heights[len(heights) // 2]
    evened = []
    for (text, boxes), span in zip(lines, spans):
        if span is not None and abs((span[3] - span[1]) - median) <= LINE_SPREAD * median:
            middle = (span[1] + span[3]) / 2
            boxes = [None if b is None else (b[0], middle - median / 2, b[2], middle + median / 2) for b in boxes]
        evened.append((text, boxes))
    return evened


def recognise(image, options: Options) -> list[tuple[str, list]]:
    """Each line the engine reads in `image`, top to bottom: its text and, per character, its pixel box
    (x0, y0, x1, y1) or None for a space."""
    image = image.convert("RGB")
    lines = _rapidocr(image) if options.chosen == "rapidocr" else _tesseract(image)
    return [(text, _on_line(_character_boxes(text, pieces, box), box)) for text, pieces, box in lines if text.strip()]


def _on_line(boxes: list, line_box) -> list:
    """Every character's box as tall as its line: an engine's word or glyph boxes follow ascenders and descenders,
    so lines would differ in height by their letters, which the layout reads as a change of type size (a new
    paragraph)."""
    top, bottom = line_box[1], line_box[3]
    return [None if box is None else (box[0], top, box[2], bottom) for box in boxes]


def _character_boxes(text: str, pieces, line_box) -> list:
    """Per character of `text`, its box: each piece (a character or a word, in order) found in the text gets its
    box shared among its characters; when the pieces do not spell the text, the line's box is shared instead."""
    boxes: list = [None] * len(text)
    at = 0
    for piece, box in pieces:
        while at < len(text) and text[at] == " ":
            at += 1
        if not piece or text[at : at + len(piece)] != piece:
            return _shared(text, line_box)
        for i, share in zip(range(at, at + len(piece)), _split(box, len(piece))):
            boxes[i] = share
        at += len(piece)
    if any(box is None and ch != " " for ch, box in zip(text, boxes)):
        return _shared(text, line_box)
    return boxes


def _shared(text: str, box) -> list:
    """The line's `box` shared among the characters of `text` (None for its spaces)."""
    if box is None:
        return [None] * len(text)
    shares = iter(_split(box, len(text)))
    return [None if ch == " " else next(shares) for ch in text]


def _split(box, count: int) -> list[tuple[float, float, float, float]]:
    x0, y0, x1, y1 = box
    step = (x1 - x0) / max(count, 1)
    return [(x0 + i * step, y0, x0 + (i + 1) * step, y1) for i in range(count)]


def _corners(points) -> tuple[float, float, float, float]:
    """The upright rectangle around a four-corner box [[x, y], …] (a skewed scan's lines lean a little)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return (float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))


_ENGINE = None


def _rapidocr(image) -> list[tuple[str, list, tuple]]:
    global _ENGINE
    if _ENGINE is None:
        from rapidocr import RapidOCR

        _ENGINE = RapidOCR(
            params={
                "Global.log_level": "error",
                "Global.return_word_box": True,
                "Global.return_single_char_box": True,
                "Global.text_score": MIN_SCORE,
            }
        )
    result = _ENGINE(np.asarray(image))
    if result.txts is None:
        return []
    words = result.word_results or [()] * len(result.txts)
    return [
        (text, [(piece, _corners(points)) for piece, _, points in line], _corners(box))
        for text, line, box in zip(result.txts, words, result.boxes)
    ]


def _tesseract(image) -> list[tuple[str, list, tuple]]:
    import io

    png = io.BytesIO()
    image.save(png, format="PNG")
    try:
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "--psm", "3", "tsv"],
            input=png.getvalue(),
            capture_output=True,
            check=True,
            env=dict(os.environ, OMP_THREAD_LIMIT="1"),  # its own threads on top of two readers: 6x slower
        )
    except (OSError, subprocess.CalledProcessError) as error:
        raise Unreadable(f"tesseract failed on a page ({error}); check the tesseract installation") from None
    lines: dict[tuple, list] = {}
    for row in done.stdout.decode("utf-8", "replace").splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) < 12 or cells[0] != "5" or not cells[11].strip() or float(cells[10]) < 0:
            continue
        left, top, width, height = (int(v) for v in cells[6:10])
        lines.setdefault(tuple(cells[1:5]), []).append((cells[11].strip(), (left, top, left + width, top + height)))
    found = []
    for words in lines.values():
        boxes = [box for _, box in words]
        line_box = (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        found.append((" ".join(word for word, _ in words), words, line_box))
    return found

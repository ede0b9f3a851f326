"""A small typesetter for the benchmarks: text → a two-column, justified, hyphenated PDF (reportlab).

Every word is placed on its own (no space characters in the page content, as many typesetters
do), long words are broken across lines with a hyphen, each page has a running header with the
title and a page number in the footer, and paragraphs are separated by a gap.
"""

from __future__ import annotations

from pathlib import Path

PAGE_W, PAGE_H = 595.0, 842.0
MARGIN, GUTTER = 50.0, 24.0
SIZE, LEADING = 9.5, 11.5
COLUMN_W = (PAGE_W - 2 * MARGIN - GUTTER) / 2
FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", "Vera.ttf")
"""DejaVu Serif covers the accents, Greek and symbols of SQuAD; Vera (inside reportlab) is the fallback."""


def _font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFError, TTFont

    if "BenchSerif" in pdfmetrics.getRegisteredFontNames():
        return "BenchSerif"
    for path in FONTS:
        try:
            pdfmetrics.registerFont(TTFont("BenchSerif", path))
            return "BenchSerif"
        except (TTFError, OSError):
            continue
    return "Times-Roman"


def _lines(paragraph: str, width_of, width: float) -> list[tuple[list[str], bool]]:
    """Greedy line breaking with hyphenation of long words: (words, is last line of the paragraph)."""
    lines, current = [], []
    words = paragraph.split()
    i = 0
    while i < len(words):
        word = words[i]
        trial = current + [word]
        if width_of(" ".join(trial)) <= width or not current and len(word) < 8:
            current, i = trial, i + 1
            continue
        if len(word) >= 8:  # break it: as much as fits, then a hyphen
            for cut in range(len(word) - 3, 2, -1):
                head = word[:cut] + "-"
                if word[cut - 1].isalpha() and word[cut].isalpha() and width_of(" ".join(current + [head])) <= width:
                    lines.append((current + [head], False))
                    current, words[i] = [], word[cut:]
                    break
            else:
                if current:
                    lines.append((current, False))
                    current = []
                else:
                    current, i = [word], i + 1
            continue
        lines.append((current, False))
        current = []
    if current:
        lines.append((current, True))
    return lines


def typeset(path: Path, title: str, paragraphs: list[str]) -> int:
    """Write `paragraphs` as a two-column PDF at `path`; returns the number of pages."""
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.pdfgen import canvas

    font = _font()
    width_of = lambda text: stringWidth(text, font, SIZE)  # noqa: E731
    pdf = canvas.Canvas(str(path), pagesize=(PAGE_W, PAGE_H))
    top, bottom = PAGE_H - MARGIN - 20, MARGIN + 20
    page, column, y = 1, 0, top

    def furniture():
        pdf.setFont(font, 7.5)
        pdf.drawString(MARGIN, PAGE_H - MARGIN + 4, title[:90])
        pdf.drawCentredString(PAGE_W / 2, MARGIN - 10, str(page))

    furniture()
    for paragraph in paragraphs:
        for words, last in _lines(paragraph, width_of, COLUMN_W):
            if y < bottom:
                column += 1
                y = top
                if column == 2:
                    pdf.showPage()
                    page += 1
                    column = 0
                    furniture()
            x = MARGIN + column * (COLUMN_W + GUTTER)
            natural = sum(width_of(w) for w in words)
            gap = width_of(" ") if last or len(words) < 2 else (COLUMN_W - natural) / (len(words) - 1)
            pdf.setFont(font, SIZE)
            for word in words:
                pdf.drawString(x, y, word)
                x += width_of(word) + gap
            y -= LEADING
        y -= LEADING * 0.8  # the gap between paragraphs
    pdf.showPage()
    pdf.save()
    return page

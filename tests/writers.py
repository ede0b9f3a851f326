"""Real documents written inside the tests with real writers from PyPI (reportlab, pypdf, python-docx)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

PAGE_W, PAGE_H = 595.0, 842.0  # A4 in points
FONT_SIZE, LEADING = 11, 14
LEFT_X, RIGHT_X = 60.0, 315.0
COLUMN_WIDTH = 220.0  # two columns, 35-point gutter
TOP_Y = 760.0
HEADER = "Journal of Reliable Kettles · Volume 7"
BODY_FONT = "Vera"
"""Bitstream Vera, shipped inside reportlab: a TrueType font with real ligature glyphs (ﬁ, ﬂ)."""


def _register_font() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if BODY_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(BODY_FONT, "Vera.ttf"))


@dataclass
class Drawn:
    """Where the writer put each line: (page, x, baseline y, text), to check extraction against."""

    lines: list = field(default_factory=list)

    def find(self, words: str):
        """(page, x, y, text) of the first drawn line that holds `words`."""
        return next(line for line in self.lines if words in line[3])


def two_column_pdf(
    path: Path,
    pages: list[tuple[list[str], list[str]]],
    interleave: bool = True,
    header: str = HEADER,
    numbers: bool = True,
) -> Drawn:
    """A typeset-like PDF: per page a left and right column of lines, a running header and a page number.

    With `interleave` the lines are drawn across the page row by row (left line 1, right line 1, …),
    as many typesetters do, so content order is not reading order.
    """
    from reportlab.pdfgen import canvas

    _register_font()
    drawn = Drawn()
    pdf = canvas.Canvas(str(path), pagesize=(PAGE_W, PAGE_H))
    for number, (left, right) in enumerate(pages, start=1):
        pdf.setFont("Helvetica", 8)
        if header:
            pdf.drawString(LEFT_X, PAGE_H - 40, header)
        if numbers:
            pdf.drawCentredString(PAGE_W / 2, 30, str(number))
        pdf.setFont(BODY_FONT, FONT_SIZE)
        rows = max(len(left), len(right))
        order = (
            [(c, i) for i in range(rows) for c in (0, 1)]
            if interleave
            else [(c, i) for c in (0, 1) for i in range(rows)]
        )
        for column, i in order:
            lines = (left, right)[column]
            if i < len(lines):
                x, y = (LEFT_X, RIGHT_X)[column], TOP_Y - i * LEADING
                pdf.drawString(x, y, lines[i])
                drawn.lines.append((number, x, y, lines[i]))
        pdf.showPage()
    pdf.save()
    return drawn


def text_pdf(path: Path, pages: list[list[str]], size: float = FONT_SIZE) -> None:
    """A plain one-column PDF, one list of lines per page."""
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=(PAGE_W, PAGE_H))
    for lines in pages:
        pdf.setFont("Helvetica", size)
        for i, line in enumerate(lines):
            pdf.drawString(72, TOP_Y - i * (size + 3), line)
        pdf.showPage()
    pdf.save()


SCAN_DPI = 200
SCAN_SIZE, SCAN_LEADING, SCAN_X = 14, 22, 72.0


def scanned_pages(pages: list[list[str]], dpi: int = SCAN_DPI) -> list:
    """Pictures of typeset pages, as a scanner makes them: each list of lines set in Vera by reportlab (line i's
    baseline at TOP_Y - i * SCAN_LEADING, from x = SCAN_X), rendered to an RGB image at `dpi` by PDFium."""
    import pypdfium2 as pdfium
    from reportlab.pdfgen import canvas

    _register_font()
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=(PAGE_W, PAGE_H))
    for lines in pages:
        pdf.setFont(BODY_FONT, SCAN_SIZE)
        for i, line in enumerate(lines):
            pdf.drawString(SCAN_X, TOP_Y - i * SCAN_LEADING, line)
        pdf.showPage()
    pdf.save()
    document = pdfium.PdfDocument(out.getvalue())
    try:
        return [page.render(scale=dpi / 72).to_pil().convert("RGB") for page in document]
    finally:
        document.close()


def scanned_pdf(path: Path, pictures: list, typeset: dict[int, list[str]] | None = None) -> None:
    """A PDF of A4 pages each showing one picture over the whole page and no text layer (what a scanner writes),
    except the pages in `typeset` (0-based number → lines), which are typeset text: a PDF mixing both."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    typeset = typeset or {}
    pdf = canvas.Canvas(str(path), pagesize=(PAGE_W, PAGE_H))
    for number in range(len(pictures) + len(typeset)):
        if number in typeset:
            pdf.setFont("Helvetica", FONT_SIZE)
            for i, line in enumerate(typeset[number]):
                pdf.drawString(72, TOP_Y - i * (FONT_SIZE + 3), line)
        else:
            picture = pictures[number - sum(1 for t in typeset if t < number)]
            pdf.drawImage(ImageReader(picture), 0, 0, width=PAGE_W, height=PAGE_H)
        pdf.showPage()
    pdf.save()


def image_only_pdf(path: Path, lines: tuple[str, ...] = ("This page was scanned; its words are pixels.",)) -> None:
    """A scanned page: a picture of typeset text, no text layer."""
    scanned_pdf(path, scanned_pages([list(lines)]))


def with_page_labels(source: Path, target: Path, roman_first: int) -> None:
    """Copy a PDF, labelling its first `roman_first` pages i, ii, … and the rest 1, 2, … (pypdf)."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.constants import PageLabelStyle

    writer = PdfWriter(clone_from=PdfReader(source))
    count = len(writer.pages)
    writer.set_page_label(0, roman_first - 1, style=PageLabelStyle.LOWERCASE_ROMAN)
    if count > roman_first:
        writer.set_page_label(roman_first, count - 1, style=PageLabelStyle.DECIMAL, start=1)
    with open(target, "wb") as handle:
        writer.write(handle)


def encrypted(source: Path, target: Path, password: str = "s3cret") -> None:
    """Copy a PDF, encrypted with a user password (pypdf, AES-256)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-256")
    with open(target, "wb") as handle:
        writer.write(handle)


def word_document(path: Path, blocks: list[tuple[str, object]]) -> None:
    """A .docx from ("h1" | "h2" | "p", text) and ("table", rows) blocks (python-docx)."""
    import docx

    document = docx.Document()
    for kind, content in blocks:
        if kind == "table":
            table = document.add_table(rows=len(content), cols=len(content[0]))
            for r, row in enumerate(content):
                for c, cell in enumerate(row):
                    table.cell(r, c).text = cell
        elif kind.startswith("h"):
            document.add_heading(content, level=int(kind[1:]))
        else:
            document.add_paragraph(content)
    document.save(str(path))


def zip_bomb(path: Path, megabytes: int = 300) -> None:
    """A zip named like a .docx whose document.xml inflates to `megabytes` of zeros."""
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            chunk = b"\0" * (1 << 20)
            for _ in range(megabytes):
                member.write(chunk)


def pdf_bytes(draw) -> bytes:
    """A one-off PDF drawn by `draw(canvas)`."""
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=(PAGE_W, PAGE_H))
    draw(pdf)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def running_pdf(
    pages: list[list[str]],
    size: tuple[float, float] = (PAGE_W, PAGE_H),
    header: str = "Annual Report of the Kettle Society",
    footer: str = "Page {n}",
) -> tuple[bytes, Drawn]:
    """One column of prose per page under a running header, over a "Page N" footer; the PDF and where lines went."""
    from reportlab.pdfgen import canvas

    out, drawn = io.BytesIO(), Drawn()
    width, height = size
    pdf = canvas.Canvas(out, pagesize=size)
    for number, lines in enumerate(pages, start=1):
        pdf.setFont("Helvetica", 9)
        pdf.drawString(72, height - 36, header)
        pdf.drawCentredString(width / 2, 40, footer.format(n=number))
        pdf.setFont("Helvetica", FONT_SIZE)
        for i, line in enumerate(lines):
            y = height - 90 - i * LEADING
            pdf.drawString(72, y, line)
            drawn.lines.append((number, 72.0, y, line))
        pdf.showPage()
    pdf.save()
    return out.getvalue(), drawn


def _edited(data: bytes, edit) -> bytes:
    """A copy of a PDF after `edit(writer)` (pypdf)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    edit(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def inherited_boxes(data: bytes, names: tuple[str, ...] = ("/MediaBox", "/CropBox")) -> bytes:
    """The same PDF with the first page's boxes written once on the page tree (/Pages) and taken off every page,
    as groff's gropdf writes its MediaBox; pages inherit them (no writer offers this, so pypdf edits the tree)."""
    from pypdf.generic import NameObject

    def edit(writer):
        tree = writer.root_object["/Pages"]
        for name in names:
            if name in writer.pages[0]:
                tree[NameObject(name)] = writer.pages[0][name]
            for page in writer.pages:
                if name in page:
                    del page[NameObject(name)]

    return _edited(data, edit)


def reshaped(data: bytes, rotate: int = 0, cropbox=None, user_unit: float | None = None) -> bytes:
    """The same PDF with every page turned by `/Rotate`, cropped to `cropbox` (left, bottom, right, top) or given a
    `/UserUnit` (pypdf)."""
    from pypdf.generic import FloatObject, NameObject, RectangleObject

    def edit(writer):
        for page in writer.pages:
            if cropbox is not None:
                page.cropbox = RectangleObject(cropbox)
            if rotate:
                page.rotate(rotate)
            if user_unit is not None:
                page[NameObject("/UserUnit")] = FloatObject(user_unit)

    return _edited(data, edit)


def groff_problem() -> str:
    """Why `groff -Tpdf` cannot run here ("" when it can): Debian's `groff` package has the PDF device,
    `groff-base` alone has not."""
    import shutil
    import subprocess

    if not shutil.which("groff"):
        return "groff is not installed (Debian: apt-get install groff)"
    made = subprocess.run(["groff", "-Tpdf", "-ms"], input=b".LP\nx\n", capture_output=True, timeout=60)
    if made.returncode or not made.stdout.startswith(b"%PDF-"):
        return "groff has no PDF device (gropdf); install Debian's `groff`, not only `groff-base`"
    return ""


def groff_pdf(source: str, *options: str) -> bytes:
    """A PDF typeset by `groff -Tpdf -ms [options]` from ms source; gropdf writes the MediaBox once, on the page
    tree. With `-P-pa4` alone (Debian's default) troff sets a US Letter length of text on an A4 MediaBox."""
    import subprocess

    made = subprocess.run(
        ["groff", "-Tpdf", "-ms", *options], input=source.encode("utf-8"), capture_output=True, timeout=60, check=True
    )
    return made.stdout

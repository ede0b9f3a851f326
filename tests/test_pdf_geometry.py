"""rag.ingest.readers.pdf page geometry: the visible box PDFium shows (inherited MediaBox and CropBox, a CropBox away
from the origin, /Rotate, UserUnit), checked against an independent reader (pdfminer.six, the parser under
pdfplumber): the characters under the drawn highlight are the quote and nothing else."""

from __future__ import annotations

import ctypes
import io
import re

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as raw
import pytest
import writers
from PIL import Image

from rag.ingest import readers
from rag.ingest.readers import TextRecord, marks, pdf

PAGE_1 = [
    "Kettles were first made of cast iron in the",
    "eighteenth century, and a maker in Leeds",
    "sold them widely across the northern towns.",
    "The first automatic switch was sold in 1955,",
    "and the idea that a kettle flips itself off",
    "spread to every kitchen in the country and",
    "far beyond, as the trade papers of the day",
    "reported with some surprise and delight when",
]
PAGE_2 = [
    "the sales figures came in from the shops.",
    "Descale them every four weeks with white",
    "vinegar to keep the taste of the water clean.",
]
HEADER = "Annual Report of the Kettle Society"
ACROSS_THE_BREAK = (
    "far beyond, as the trade papers of the day reported with some surprise and delight when "
    "the sales figures came in from the shops."
)
QUOTES = [(1, "The first automatic switch was sold in 1955"), (1, "a maker in Leeds sold them widely"), (2, "Descale")]
CROP = (40.0, 60.0, 520.0, 800.0)


def _base() -> bytes:
    return writers.running_pdf([PAGE_1, PAGE_2])[0]


def _cases() -> dict[str, bytes]:
    base = _base()
    cases = {
        "reportlab A4": base,
        "MediaBox inherited from the page tree": writers.inherited_boxes(base),
        "CropBox at (40, 60)": writers.reshaped(base, cropbox=CROP),
        "MediaBox and CropBox inherited": writers.inherited_boxes(writers.reshaped(base, cropbox=CROP)),
        "UserUnit 2": writers.reshaped(base, user_unit=2.0),
    }
    for rotation in (90, 180, 270):
        cases[f"/Rotate {rotation}"] = writers.reshaped(base, rotate=rotation)
        cases[f"/Rotate {rotation}, cropped"] = writers.inherited_boxes(
            writers.reshaped(base, rotate=rotation, cropbox=CROP)
        )
    return cases


CASES = _cases()


def _normal(text: str) -> str:
    return " ".join(text.split())


def pdfminer_chars(data: bytes, page_number: int) -> list[tuple[str, float, float]]:
    """(character, centre x, centre y) in PDF user space, as pdfminer.six reads the page: its device space
    (MediaBox origin and /Rotate applied by the page matrix it starts from) mapped back through that matrix."""
    from pdfminer.converter import PDFPageAggregator
    from pdfminer.layout import LTChar, LTContainer
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage

    class Device(PDFPageAggregator):
        def begin_page(self, page, ctm):
            self.page_matrix = ctm
            super().begin_page(page, ctm)

    manager = PDFResourceManager()
    device = Device(manager, laparams=None)
    page = list(PDFPage.get_pages(io.BytesIO(data)))[page_number - 1]
    PDFPageInterpreter(manager, device).process_page(page)
    a, b, c, d, e, f = device.page_matrix
    inverse = np.linalg.inv(np.array([[a, c, e], [b, d, f], [0, 0, 1]], dtype=float))

    def walk(item):
        if isinstance(item, LTChar):
            x, y, _ = inverse @ np.array([(item.x0 + item.x1) / 2, (item.y0 + item.y1) / 2, 1.0])
            yield item.get_text(), float(x), float(y)
        elif isinstance(item, LTContainer):
            for child in item:
                yield from walk(child)

    return list(walk(device.get_result()))


def _to_user_space(data: bytes, page_number: int, image_size, rectangle) -> tuple[float, float, float, float]:
    """A rectangle in rendered-image pixels back in PDF user space, through PDFium's own FPDF_DeviceToPage."""

    fine = 64  # device coordinates are integers: work on a finer grid than the image's pixels
    document = pdfium.PdfDocument(data)
    try:
        page = document[page_number - 1]
        xs, ys = [], []
        for px, py in ((rectangle[0], rectangle[1]), (rectangle[2], rectangle[3])):
            x, y = ctypes.c_double(), ctypes.c_double()
            size = (image_size[0] * fine, image_size[1] * fine)
            raw.FPDF_DeviceToPage(page, 0, 0, *size, 0, round(px * fine), round(py * fine), x, y)
            xs.append(x.value)
            ys.append(y.value)
    finally:
        document.close()
    return min(xs), min(ys), max(xs), max(ys)


def text_under_marks(data: bytes, page_number: int, record: TextRecord, quote: str, max_pixels: int = 900):
    """The characters pdfminer finds under the rectangles render_page draws for `quote`, rectangle by rectangle;
    and the rendered image with those rectangles, to check the yellow is where they are."""

    start = record.text.index(quote)
    boxes = record.quote_boxes(start, start + len(quote))[page_number]
    image = Image.open(io.BytesIO(pdf.render_page(data, page_number, boxes, max_pixels))).convert("RGB")
    document = pdfium.PdfDocument(data)
    try:
        geometry = pdf.page_geometry(document[page_number - 1])
    finally:
        document.close()
    rectangles = marks.highlight_rectangles(boxes, geometry, image.size)
    chars = pdfminer_chars(data, page_number)
    pieces = []
    for rectangle in rectangles:
        left, bottom, right, top = _to_user_space(data, page_number, image.size, rectangle)
        inside = [(x, ch) for ch, x, y in chars if left <= x <= right and bottom <= y <= top]
        pieces.append("".join(ch for _, ch in sorted(inside)))  # text runs left to right in user space
    return " ".join(pieces), image, rectangles


def _yellow(image) -> np.ndarray:
    pixels = np.asarray(image).astype(int)
    return (pixels[..., 0] > 200) & (pixels[..., 1] > 150) & (pixels[..., 2] < 180)


@pytest.mark.parametrize("case", list(CASES))
def test_the_text_under_the_drawn_highlight_is_the_quote_and_nothing_else(case):
    data = CASES[case]
    record = pdf.read(data)
    for page_number, quote in QUOTES:
        under, image, rectangles = text_under_marks(data, page_number, record, quote)
        assert _normal(under) == _normal(quote), (case, quote)
        yellow = _yellow(image)
        rows, cols = np.nonzero(yellow)
        assert rows.size > 50, (case, quote)
        inside = np.zeros_like(yellow)
        for x0, y0, x1, y1 in rectangles:  # the yellow drawn is these rectangles, not another place
            inside[max(0, int(y0) - 2) : int(y1) + 3, max(0, int(x0) - 2) : int(x1) + 3] = True
        assert not (yellow & ~inside).any(), (case, quote)


@pytest.mark.parametrize("case", list(CASES))
def test_the_stored_frame_is_the_visible_box_pdfium_shows(case):
    record = pdf.read(CASES[case])
    cropped = "CropBox" in case or "cropped" in case
    assert record.page_frames == ((CROP if cropped else (0.0, 0.0, writers.PAGE_W, writers.PAGE_H)),) * 2
    document = pdfium.PdfDocument(CASES[case])
    try:
        width, height = document[0].get_size()
    finally:
        document.close()
    left, bottom, right, top = record.page_frames[0]
    turned = any(f"/Rotate {r}" in case for r in (90, 270))
    assert (width, height) == ((top - bottom, right - left) if turned else (right - left, top - bottom))


@pytest.mark.parametrize("case", list(CASES))
def test_running_header_and_page_footers_stay_out_and_the_sentence_across_the_break_is_whole(case):
    record = pdf.read(CASES[case])
    assert HEADER not in record.text and not re.search(r"Page \d", record.text)
    assert ACROSS_THE_BREAK in record.text
    assert record.pages_of(record.text.index(ACROSS_THE_BREAK), len(record.text)) == [1, 2]


@pytest.mark.parametrize("size", [(writers.PAGE_W, writers.PAGE_H), (writers.PAGE_H, writers.PAGE_W)])
def test_an_inherited_a4_page_is_not_read_as_us_letter(size):
    """A4 portrait and landscape, MediaBox on the page tree: PDFium's box getters alone say 612 × 792."""
    pages = [PAGE_1[:4], PAGE_1[4:], PAGE_2]
    data = writers.inherited_boxes(writers.running_pdf(pages, size=size)[0])
    record = pdf.read(data)
    assert record.page_frames == ((0.0, 0.0, *size),) * 3
    assert HEADER not in record.text and not re.search(r"Page \d", record.text)
    assert ACROSS_THE_BREAK in record.text
    assert "The first automatic switch was sold in 1955, and the idea that a kettle" in record.text


def test_characters_cropped_away_are_not_in_the_text_of_record():
    data = writers.reshaped(_base(), cropbox=(40.0, 60.0, 520.0, 745.0))  # the header and the first line fall off
    record = pdf.read(data)
    assert PAGE_1[0] not in record.text and "Kettles" not in record.text
    assert record.text.startswith("eighteenth century, and a maker in Leeds")
    assert "the sales figures" not in record.text and "Descale them every four weeks" in record.text


@pytest.mark.parametrize(
    ("rotation", "image_size", "expected"),
    [
        (0, (200, 400), (40.0, 320.0, 60.0, 340.0)),
        (90, (400, 200), (60.0, 40.0, 80.0, 60.0)),
        (180, (200, 400), (140.0, 60.0, 160.0, 80.0)),
        (270, (400, 200), (320.0, 140.0, 340.0, 160.0)),
        (0, (100, 200), (20.0, 160.0, 30.0, 170.0)),  # scale 1
        (90, (100, 50), (15.0, 10.0, 20.0, 15.0)),  # scale 0.5
    ],
)
def test_to_pixels_moves_turns_and_scales_a_box(rotation, image_size, expected):
    geometry = marks.PageGeometry((10.0, 20.0, 110.0, 220.0), rotation)  # 100 × 200, origin away from (0, 0)
    assert marks.to_pixels((30.0, 50.0, 40.0, 60.0), geometry, image_size) == pytest.approx(expected)


@pytest.mark.parametrize("case", list(CASES))
def test_to_pixels_agrees_with_pdfiums_own_page_to_device(case):
    document = pdfium.PdfDocument(CASES[case])
    try:
        page = document[0]
        geometry = pdf.page_geometry(page)
        fine = 64
        size = tuple(round(v * 2) for v in page.get_size())  # the image at scale 2
        for box in [(100.0, 300.0, 130.0, 320.0), (55.5, 700.25, 60.0, 790.0)]:
            mine = marks.to_pixels(box, geometry, size)
            corners = []
            for x, y in ((box[0], box[1]), (box[2], box[3])):
                dx, dy = ctypes.c_int(), ctypes.c_int()
                raw.FPDF_PageToDevice(page, 0, 0, size[0] * fine, size[1] * fine, 0, x, y, dx, dy)
                corners.append((dx.value / fine, dy.value / fine))
            (ax, ay), (bx, by) = corners
            theirs = (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
            assert mine == pytest.approx(theirs, abs=0.05), case
    finally:
        document.close()


def test_user_unit_is_followed_as_pdfium_renders_it():
    """PDFium (as pypdfium2 documents) does not scale a page by /UserUnit: the image and the marks stay in step."""
    data = CASES["UserUnit 2"]
    record = pdf.read(data)
    start = record.text.index("Descale")
    png = pdf.render_page(data, 2, record.quote_boxes(start, start + 7)[2], max_pixels=842)
    assert Image.open(io.BytesIO(png)).size == (595, 842)


def test_a_record_carries_the_version_of_the_reader_that_wrote_it():
    record = readers.read("pdf", _base())
    assert record.reader_version == pdf.READER_VERSION == readers.reader_version("pdf") >= 1
    assert TextRecord.from_json(record.to_json()).reader_version == pdf.READER_VERSION
    written_before = re.sub(r',\s*"reader_version": \d+', "", record.to_json())
    assert TextRecord.from_json(written_before).reader_version == 0  # unrecorded: read again
    assert readers.reader_version("html") == getattr(readers._module("html"), "READER_VERSION", 0)


def test_kinds_whose_texts_of_record_an_older_reader_wrote_are_stale():
    current = readers.reader_versions()
    assert current["pdf"] == pdf.READER_VERSION and set(current) >= {"pdf", "docx", "html"}
    assert readers.stale_kinds({}, {"pdf", "text"}) == ["pdf"]  # an index that recorded no versions: PDFs again
    assert readers.stale_kinds(current, {"pdf", "docx", "html", "text"}) == []
    assert readers.stale_kinds({**current, "pdf": 0}, {"pdf", "docx"}) == ["pdf"]
    assert readers.stale_kinds({"pdf": 0}, {"docx"}) == ([] if current["docx"] == 0 else ["docx"])


GROFF_SOURCE = """.ds LH Annual Report of the Kettle Society
.ds CF Page %
.LP
{body}
"""


PARAGRAPHS = 24
"""Three pages and more: ms heads pages 2 on with the header and "-N-", foots each with "Page N" an inch up."""


@pytest.fixture(scope="module")
def groff_document():
    problem = writers.groff_problem()
    if problem:
        pytest.skip(problem)
    paragraphs = [
        " ".join(f"Kettle paragraph {p} sentence {s} tells how water boils in copper and steel." for s in range(9))
        for p in range(PARAGRAPHS)
    ]
    marked = "The groff quote sits here, on a page of its own making."
    paragraphs[7] = marked + " " + paragraphs[7]
    data = writers.groff_pdf(GROFF_SOURCE.format(body="\n.PP\n".join(paragraphs)), "-P-pa4")  # Debian's default
    return data, pdf.read(data), marked


def test_groff_pages_inherit_their_mediabox_and_are_read_as_a4(groff_document):
    data, record, _ = groff_document
    document = pdfium.PdfDocument(data)
    try:
        assert document[0].get_mediabox() == (0, 0, 612, 792)  # PDFium's box getter: the US Letter fallback
    finally:
        document.close()
    assert len(record.page_frames) >= 3
    assert set(record.page_frames) == {(0.0, 0.0, 595.0, 842.0)}


def test_groff_headers_and_footers_stay_out_and_sentences_run_over_page_breaks(groff_document):
    _, record, _ = groff_document
    assert HEADER not in record.text and not re.search(r"Page \d|-\d+-", record.text)
    for p in range(PARAGRAPHS):  # every sentence whole, the ones a page break cuts among them
        for s in range(9):
            assert f"Kettle paragraph {p} sentence {s} tells how water boils in copper and steel." in record.text


def test_groff_quote_is_highlighted_where_it_is(groff_document):
    data, record, marked = groff_document
    page_number = record.page_of(record.text.index(marked))
    under, _, _ = text_under_marks(data, page_number, record, marked)
    assert _normal(under) == _normal(marked)

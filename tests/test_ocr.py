"""Scanned pages and images read by OCR: text of record, a box under every character, marks on the shown page.

The scans are typeset pages (reportlab) rendered to pictures (PDFium) and saved by Pillow or drawn into image-only
PDFs by reportlab: the tests know each word's place from the writer's own metrics.
"""

from __future__ import annotations

import io
import shutil

import pytest
import writers
from PIL import Image

from rag.ingest import readers
from rag.ingest.readers import Unreadable, image, marks, ocr, pdf
from rag.ingest.readers.worker import Extractor

LINES = [
    "The harbour bridge opened in 1932 after nine years of work.",
    "Its steel arch spans 503 metres over the water.",
    "Painters renew the grey coat every seven years.",
]
SECOND = ["The ferry to Halsey Island leaves at 7:45 from pier three."]
RAPID = ocr.Options("rapidocr")


def png(picture) -> bytes:
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def pictures():
    return writers.scanned_pages([LINES, SECOND])


def drawn_box(line: int, words: str, dpi: int = writers.SCAN_DPI):
    """Where the writer drew `words` of LINES[line], in the picture's pixels with y upwards (an image's page
    space): from the font's own metrics."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    writers._register_font()
    text, scale = LINES[line], dpi / 72
    left = writers.SCAN_X + stringWidth(text[: text.index(words)], writers.BODY_FONT, writers.SCAN_SIZE)
    right = left + stringWidth(words, writers.BODY_FONT, writers.SCAN_SIZE)
    baseline = writers.TOP_Y - line * writers.SCAN_LEADING
    return (left * scale, baseline * scale, right * scale, (baseline + 0.7 * writers.SCAN_SIZE) * scale)


def union(boxes):
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def text_under_marks(png_bytes_unmarked: bytes, rectangles) -> list[str]:
    """What a recogniser reads in each marked rectangle of the rendered page, read as one line (no detection)."""
    import numpy as np
    from rapidocr import RapidOCR

    line_reader = RapidOCR(params={"Global.log_level": "error", "Global.use_det": False, "Global.use_cls": False})
    page = Image.open(io.BytesIO(png_bytes_unmarked)).convert("RGB")
    read = []
    for x0, y0, x1, y1 in rectangles:
        pad = 0.2 * (y1 - y0)
        crop = page.crop((int(x0 - 1), int(y0 - pad), int(x1 + 1), int(y1 + pad)))
        read.append(" ".join(line_reader(np.asarray(crop)).txts or ()).strip())
    return read


def test_an_image_of_a_page_is_read_with_every_character_boxed_where_it_was_drawn(pictures):
    record = readers.read("image", png(pictures[0]), ocr=RAPID)
    assert all(line in record.text for line in LINES)
    assert record.kind == "image" and record.page_frames == ((0.0, 0.0, *map(float, pictures[0].size)),)
    for line, words in [(0, "1932"), (1, "503 metres"), (2, "seven years")]:
        start = record.text.index(words)
        boxes = record.quote_boxes(start, start + len(words))[1]
        assert len(boxes) == len(words.replace(" ", ""))  # every character but the space has its box
        found, drawn = union(boxes), drawn_box(line, words)
        height = drawn[3] - drawn[1]
        assert all(abs(a - b) < 0.6 * height for a, b in zip(found, drawn)), (words, found, drawn)


def test_the_marks_on_a_cited_image_cover_the_quote_and_nothing_else(pictures):
    data = png(pictures[0])
    record = readers.read("image", data, ocr=RAPID)
    quote = "503 metres"
    start = record.text.index(quote)
    boxes = record.quote_boxes(start, start + len(quote))[1]
    rendered = image.render_page(data, 1, [], max_pixels=1400)
    size = Image.open(io.BytesIO(rendered)).size
    rectangles = marks.highlight_rectangles(boxes, marks.PageGeometry(record.page_frames[0]), size)
    assert len(rectangles) == 1 and text_under_marks(rendered, rectangles) == [quote]
    marked = Image.open(io.BytesIO(image.render_page(data, 1, boxes, max_pixels=1400))).convert("RGB")
    x0, y0, x1, y1 = (int(v) for v in rectangles[0])
    assert marked.getpixel(((x0 + x1) // 2, y0 + 1)) != (255, 255, 255)  # yellow drawn there


def test_a_multipage_tiff_is_one_page_per_frame_and_a_photo_is_turned_upright(pictures):
    out = io.BytesIO()
    pictures[0].save(out, format="TIFF", save_all=True, append_images=[pictures[1]], compression="tiff_lzw")
    record = readers.read("image", out.getvalue(), ocr=RAPID)
    assert len(record.page_starts) == 2
    assert record.page_of(record.text.index("Halsey Island")) == 2 and record.page_of(record.text.index("1932")) == 1
    sideways = pictures[1].rotate(90, expand=True)  # stored on its side, with EXIF saying how to show it
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to show
    photo = io.BytesIO()
    sideways.save(photo, format="JPEG", quality=85, exif=exif)
    record = readers.read("image", photo.getvalue(), ocr=RAPID)
    assert "leaves at 7:45 from pier three" in record.text
    assert record.page_frames[0][2:] == tuple(map(float, pictures[1].size))


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_a_scanned_pdf_page_is_read_and_marked_exactly_even_when_turned(pictures, tmp_path, rotate):
    """The picture is stored turned against the page's /Rotate, as a scanner writes a sideways page: shown upright."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    stored = pictures[0].rotate(rotate, expand=True)
    width, height = (writers.PAGE_H, writers.PAGE_W) if rotate in (90, 270) else (writers.PAGE_W, writers.PAGE_H)
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=(width, height))
    page.drawImage(ImageReader(stored), 0, 0, width=width, height=height)
    page.showPage()
    page.save()
    data = writers.reshaped(out.getvalue(), rotate=rotate) if rotate else out.getvalue()
    record = readers.read("pdf", data, ocr=RAPID)
    assert all(line in record.text for line in LINES)
    quote = "steel arch spans"
    start = record.text.index(quote)
    boxes = record.quote_boxes(start, start + len(quote))[1]
    rendered = pdf.render_page(data, 1, [], max_pixels=1400)
    size = Image.open(io.BytesIO(rendered)).size
    import pypdfium2 as pdfium

    with pdfium.PdfDocument(data) as document:
        geometry = pdf.page_geometry(document[0])
    rectangles = marks.highlight_rectangles(boxes, geometry, size)
    assert len(rectangles) == 1 and text_under_marks(rendered, rectangles) == [quote]


def test_a_pdf_mixing_typeset_and_scanned_pages_reads_both_in_order(pictures, tmp_path):
    path = tmp_path / "mixed.pdf"
    writers.scanned_pdf(path, [pictures[1]], typeset={0: ["The typeset page says the tide turns at noon."]})
    record = readers.read("pdf", path.read_bytes(), ocr=RAPID)
    assert record.page_of(record.text.index("tide turns at noon")) == 1
    assert record.page_of(record.text.index("Halsey Island")) == 2
    start = record.text.index("Halsey Island")
    boxes = record.quote_boxes(start, start + 13)[2]
    assert all(0 <= b[0] < b[2] <= writers.PAGE_W and 0 <= b[1] < b[3] <= writers.PAGE_H for b in boxes)


def test_scans_beyond_the_budget_or_without_an_engine_are_skipped_with_the_fix(pictures, monkeypatch):
    out = io.BytesIO()
    pictures[0].save(out, format="TIFF", save_all=True, append_images=[pictures[1]])
    with pytest.raises(
        Unreadable, match=r"2 of its pages are scanned images, over the OCR budget of 1 .*RAG_OCR_PAGES"
    ):
        readers.read("image", out.getvalue(), ocr=ocr.Options("rapidocr", max_pages=1))
    with pytest.raises(Unreadable, match=r"OCR is off \(RAG_OCR=off\); set RAG_OCR=auto"):
        readers.read("image", out.getvalue(), ocr=ocr.Options("off"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(Unreadable, match="tesseract is not installed; apt install tesseract-ocr"):
        readers.read("image", out.getvalue(), ocr=ocr.Options("tesseract"))
    assert ocr.Options("auto").chosen == "rapidocr"  # auto: RapidOCR where tesseract is not installed
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    assert ocr.Options("auto").chosen == "tesseract" and ocr.Options("rapidocr").chosen == "rapidocr"
    with pytest.raises(Unreadable, match="damaged or truncated image"):
        readers.read("image", out.getvalue()[:300], ocr=RAPID)


def test_an_image_too_large_to_be_a_page_is_refused_before_it_is_decoded():
    out = io.BytesIO()
    Image.new("1", (12_000, 9_000)).save(out, format="PNG")
    with pytest.raises(Unreadable, match="pixels, over 100,000,000; scan it at a lower resolution"):
        readers.read("image", out.getvalue(), ocr=RAPID)


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Debian's tesseract-ocr is not installed (make test)")
def test_tesseract_reads_the_same_page_with_word_boxes_shared_by_its_characters(pictures):
    record = readers.read("image", png(pictures[0]), ocr=ocr.Options("tesseract"))
    assert all(line in record.text for line in LINES)
    start = record.text.index("503")
    found, drawn = union(record.quote_boxes(start, start + 3)[1]), drawn_box(1, "503")
    assert all(abs(a - b) < 0.6 * (drawn[3] - drawn[1]) for a, b in zip(found, drawn))


def test_a_long_read_that_reports_progress_is_not_stopped_and_its_progress_is_heard():
    heard = []
    with Extractor(timeout=2, reader="hanging_reader:read") as extractor:
        assert extractor.read("pdf", b"%PDF-1.4 report-me", on_progress=heard.append) == "read after 4 s of steps"
        reason = extractor.read("pdf", b"%PDF-1.4 hang-me")
    assert heard == [f"step {n} of 8" for n in range(1, 9)]
    assert "took longer than 2 s" in reason


def test_a_scanned_pdf_read_in_the_reader_process_reports_its_pages(pictures, tmp_path):
    path = tmp_path / "scan.pdf"
    writers.scanned_pdf(path, pictures)
    heard = []
    with Extractor(timeout=60, ocr=RAPID) as extractor:
        record = extractor.read("pdf", path.read_bytes(), on_progress=heard.append)
    assert heard == ["OCR page 1 of 2", "OCR page 2 of 2"]
    assert "Halsey Island" in record.text


def test_facts_in_a_scan_and_an_image_are_answered_with_verified_quotes_and_marked_pages(
    make_settings, real_embedder, pictures
):
    from rag.answer.quotes import answer
    from rag.build.indexer import build
    from rag.index import store
    from rag.search import Retriever
    from rag.serve.page_images import cited_pages

    settings = make_settings(model=real_embedder.name)
    writers.scanned_pdf(settings.corpus / "bridge.pdf", [pictures[0]])
    (settings.corpus / "ferry.png").write_bytes(png(pictures[1]))
    (settings.corpus / "cafe.txt").write_text("The museum café serves soup at lunchtime.\n", encoding="utf-8")
    said = []
    summary = build(settings, embedder_factory=lambda name: real_embedder, progress=said.append)
    assert not summary.skipped and "reading bridge.pdf: OCR page 1 of 1" in said
    retriever, loaded = Retriever(settings), store.load(settings.index)
    for question, source, fact in [
        ("How long is the steel arch of the harbour bridge?", "bridge.pdf", "503 metres"),
        ("When does the ferry to Halsey Island leave?", "ferry.png", "7:45"),
    ]:
        result = answer(question, retriever, settings)
        assert not result.abstained, result.text
        first = result.citations[0]
        assert first.source == source and fact in first.quote and first.page == 1
        record = readers.load_record(loaded.texts_folder(source), loaded.manifest.files[source].sha256)
        assert record.text[first.start : first.end] == first.quote
        shown = cited_pages(settings.corpus, retriever.index, first)
        assert [page.page for page in shown] == [1] and shown[0].png.startswith(b"\x89PNG")
    (settings.corpus / "ferry.png").write_bytes(png(pictures[1].rotate(0.5, fillcolor="white")))
    summary = build(settings, embedder_factory=lambda name: real_embedder)
    assert (summary.files_changed, summary.files_converted, summary.files_unchanged) == (1, 1, 2)  # the rescan alone


@pytest.mark.parametrize("angle", [1.5, -2.0])
def test_a_crooked_scan_is_straightened_for_reading_and_marked_where_the_words_lean(pictures, angle):
    import math

    crooked = pictures[0].rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor="white")
    assert ocr.skew(crooked) == pytest.approx(angle, abs=0.2)
    record = readers.read("image", png(crooked), ocr=RAPID)
    assert all(line in record.text for line in LINES)
    start = record.text.index("seven years")
    found = union(record.quote_boxes(start, start + len("seven years"))[1])
    x0, y0, x1, y1 = drawn_box(2, "seven years")  # y upwards: turn about the picture's centre, counter-clockwise
    width, height = crooked.size
    cx, cy = (x0 + x1) / 2 - width / 2, (y0 + y1) / 2 - height / 2
    turn = math.radians(angle)
    expected = (
        width / 2 + cx * math.cos(turn) - cy * math.sin(turn),
        height / 2 + cx * math.sin(turn) + cy * math.cos(turn),
    )
    centre = ((found[0] + found[2]) / 2, (found[1] + found[3]) / 2)
    assert centre == pytest.approx(expected, abs=0.5 * (y1 - y0))

"""rag.ingest.readers: PDF, Word and HTML turned into a text of record that can be quoted, or a named skip."""

from __future__ import annotations

import re

import numpy as np
import pytest
import writers

from rag.ingest import readers
from rag.ingest.readers import Unreadable, docx, html, marks, pdf
from rag.ingest.readers.worker import Extractor

LEFT_1 = [
    "Kettles were first made of cast iron in",
    "the eighteenth century, and their ef-",
    "ﬁciency was poor. A well-known maker",
    "in Leeds sold them widely.",
]
LEFT_2 = [
    "A second paragraph starts here and",
    "talks about copper kettles that were",
    "light and expensive.",
]
RIGHT_1 = [
    "The right column tells how electric",
    "kettles arrived in the twentieth cen-",
    "tury. The ﬁrst automatic switch was",
    "sold in 1955, and the idea that a",
    "kettle ﬂips itself off spread to every",
    "kitchen in the whole country and far",
]
PAGE_2_LEFT = ["beyond, as the trade papers said.", "Modern kettles boil a litre in about", "three minutes."]
PAGE_2_RIGHT = ["Descale them every four weeks with", "white vinegar to keep the taste clean."]


@pytest.fixture(scope="module")
def typeset(tmp_path_factory):
    """A two-page, two-column PDF drawn row by row across the columns, with a running header and page numbers."""
    path = tmp_path_factory.mktemp("pdf") / "kettles.pdf"
    drawn = writers.two_column_pdf(path, [(LEFT_1 + [""] + LEFT_2, RIGHT_1), (PAGE_2_LEFT, PAGE_2_RIGHT)])
    return path, drawn, pdf.read(path.read_bytes())


def test_two_columns_read_column_by_column_with_hyphens_joined_and_ligatures_expanded(typeset):
    _, _, record = typeset
    assert record.text.startswith(
        "Kettles were first made of cast iron in the eighteenth century, and their efficiency was poor. "
        "A well-known maker in Leeds sold them widely.\n\nA second paragraph starts here and talks about "
        "copper kettles that were light and expensive.\n\nThe right column tells how electric kettles "
        "arrived in the twentieth century. The first automatic switch was sold in 1955"
    )
    assert "kettle flips itself off spread" in record.text  # ﬂ expanded
    assert not re.search("[\ufb00-\ufb06\x02\u00ad]", record.text)


def test_a_sentence_running_over_a_page_break_stays_one_sentence_and_lists_both_pages(typeset):
    _, _, record = typeset
    sentence = "The right column tells how electric kettles"
    start = record.text.index("and the idea that a kettle")
    end = record.text.index("as the trade papers said.") + len("as the trade papers said.")
    assert "kitchen in the whole country and far beyond, as the trade" in record.text[start:end]
    assert record.pages_of(start, end) == [1, 2]
    assert record.page_of(record.text.index(sentence)) == 1
    assert record.page_of(record.text.index("Descale them")) == 2
    assert record.page_starts == (0, record.text.index("beyond, as the trade"))


def test_running_headers_and_page_numbers_are_not_in_the_text(typeset):
    _, _, record = typeset
    assert "Journal of Reliable Kettles" not in record.text
    assert not re.search(r"(?m)^\s*[12]\s*$", record.text)
    assert "\n\n1\n\n" not in record.text and not record.text.rstrip().endswith(("1", "2"))


def test_every_character_has_a_box_on_the_line_it_was_drawn(typeset):
    _, drawn, record = typeset
    assert record.boxes.shape == (len(record.text), 4)
    for words in ("sold in 1955", "Leeds sold them", "Descale them every", "three minutes"):
        start = record.text.index(words)
        page, x, baseline, line = drawn.find(words)
        boxes = record.quote_boxes(start, start + len(words))
        assert list(boxes) == [page]
        for left, bottom, right, top in boxes[page]:
            assert bottom - 0.5 <= baseline <= top  # the line's baseline runs through each box
            assert x - 0.5 <= left < right <= x + writers.COLUMN_WIDTH
    separators = [i for i, ch in enumerate(record.text) if ch == "\n"]
    assert np.isnan(record.boxes[separators]).all()  # characters the reader put in have no box


def test_highlight_rectangles_cover_only_the_quoted_lines(typeset):
    _, drawn, record = typeset
    quote = "The first automatic switch was sold in 1955"
    start = record.text.index(quote)
    rectangles = marks.line_rectangles(record.quote_boxes(start, start + len(quote))[1])
    assert len(rectangles) == 2  # the quote runs over two drawn lines
    first_line, second_line = drawn.find("tury. The ﬁrst"), drawn.find("sold in 1955")
    (l1, b1, r1, t1), (l2, b2, r2, t2) = rectangles
    assert b1 <= first_line[2] <= t1 and b2 <= second_line[2] <= t2
    assert l1 > writers.RIGHT_X + 20 and abs(l2 - writers.RIGHT_X) < 1  # starts after "tury. ", at the column
    assert r2 < writers.RIGHT_X + writers.COLUMN_WIDTH - 40  # ends after "1955", not at the line's end


def test_the_rendered_page_shows_the_highlight_where_the_quote_is(typeset):
    from io import BytesIO

    from PIL import Image

    path, drawn, record = typeset
    quote = "Leeds sold them widely."
    start = record.text.index(quote)
    png = pdf.render_page(path.read_bytes(), 1, record.quote_boxes(start, start + len(quote))[1], max_pixels=842)
    image = Image.open(BytesIO(png)).convert("RGB")
    assert image.size == (595, 842)
    pixels = np.asarray(image).astype(int)
    yellow = (pixels[..., 0] > 200) & (pixels[..., 1] > 150) & (pixels[..., 2] < 180)
    rows, cols = np.nonzero(yellow)
    page, x, baseline, _ = drawn.find(quote)
    assert rows.size > 100
    assert abs((842 - baseline) - np.median(rows)) < 12 and cols.min() >= x - 2


def test_page_labels_come_from_the_pdf(tmp_path, typeset):
    path, _, _ = typeset
    writers.with_page_labels(path, tmp_path / "labelled.pdf", roman_first=1)
    record = pdf.read((tmp_path / "labelled.pdf").read_bytes())
    assert record.page_labels == ("i", "1")
    assert record.label_of(1) == "i" and record.label_of(2) == "1"
    assert pdf.read(path.read_bytes()).label_of(1) is None


@pytest.mark.parametrize(
    "make, reason",
    [
        (
            lambda p, src: p.write_bytes(writers.pdf_bytes(lambda c: c.rect(100, 100, 200, 200, fill=1))),
            "no text in it: its pages hold neither a text layer nor pictures of text",
        ),
        (lambda p, src: writers.encrypted(src, p), "encrypted (password-protected) PDF"),
        (lambda p, src: p.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2]), "damaged or truncated PDF"),
        (
            lambda p, src: p.write_bytes(
                writers.pdf_bytes(lambda c: (c.setPageSize((20000, 400)), c.drawString(10, 10, "A banner of a page")))
            ),
            "beyond the PDF limit",
        ),
    ],
    ids=["scanned", "encrypted", "truncated", "huge-page"],
)
def test_bad_pdfs_are_unreadable_with_their_reason(tmp_path, typeset, make, reason):
    path = tmp_path / "bad.pdf"
    make(path, typeset[0])
    with pytest.raises(Unreadable, match=re.escape(reason)):
        pdf.read(path.read_bytes())


WORD_BLOCKS = [
    ("h1", "1 Introduction"),
    ("p", "Kettles boil water for tea and for cooking."),
    ("h1", "2 Methods"),
    ("p", "We timed twelve kettles from cold."),
    ("h2", "2.1 Data"),
    ("p", "Each kettle held one litre of tap water at twelve degrees."),
    ("table", [["Kettle", "Minutes"], ["Copper", "4.5"], ["Steel", "3.1"]]),
    ("h1", "3 Results"),
    ("p", "Steel kettles boiled fastest."),
]


def test_word_paragraphs_tables_and_the_heading_path(tmp_path):
    path = tmp_path / "report.docx"
    writers.word_document(path, WORD_BLOCKS)
    record = docx.read(path.read_bytes())
    assert "We timed twelve kettles from cold.\n\n2.1 Data\n\nEach kettle held" in record.text
    assert "| Kettle | Minutes |\n| Copper | 4.5 |\n| Steel | 3.1 |" in record.text
    assert record.section_of(record.text.index("Each kettle held")) == "2 Methods › 2.1 Data"
    assert record.section_of(record.text.index("| Copper")) == "2 Methods › 2.1 Data"
    assert record.section_of(record.text.index("Steel kettles boiled")) == "3 Results"
    assert record.section_of(record.text.index("Kettles boil water")) == "1 Introduction"
    assert record.page_of(0) is None and record.pages_of(0, 5) == []


def test_word_files_that_are_not_zips_or_are_zip_bombs_are_refused(tmp_path):
    with pytest.raises(Unreadable, match="not a Word file: it should be a zip archive and this is not one"):
        docx.read(b"PK\x03\x04 but nothing after it")
    writers.zip_bomb(tmp_path / "bomb.docx", megabytes=300)
    with pytest.raises(Unreadable, match="zip bomb"):
        docx.read((tmp_path / "bomb.docx").read_bytes())


PAGE = """<!DOCTYPE html>
<html><head><title>Otters</title><style>body { color: red }</style>
<script>var tracking = "Sea otters are secretly robots."; document.title = tracking;</script></head>
<body>
<header><nav><a href="/">Home</a> | <a href="/about">About us</a> | Sea otters menu</nav></header>
<aside>Sponsored: Sea otter plush toys, 20% off.</aside>
<main>
<h1>Sea otters</h1>
<p>Sea otters hold hands while they   sleep,
so that they do not drift apart.</p>
<h2>Food</h2>
<p>They eat sea urchins, crabs &amp; clams.<script>alert("never quoted")</script></p>
<ul><li>Urchins are cracked on a stone.</li><li>Clams are opened by hand.</li></ul>
</main>
<footer>Copyright 2026 Otter Facts. All rights reserved.</footer>
</body></html>
"""


def test_html_keeps_the_main_text_and_drops_scripts_and_navigation():
    record = html.read(PAGE.encode("utf-8"))
    assert record.text == (
        "Sea otters\n\nSea otters hold hands while they sleep, so that they do not drift apart.\n\n"
        "Food\n\nThey eat sea urchins, crabs & clams.\n\nUrchins are cracked on a stone.\n\nClams are opened by hand."
    )
    assert record.section_of(record.text.index("They eat")) == "Sea otters › Food"
    assert record.section_of(record.text.index("Sea otters hold")) == "Sea otters"


def test_html_line_breaks_stay_inside_their_paragraph():
    record = html.read(b"<html><body><p>The kettle sang<br>and then it stopped.</p><p>Next.</p></body></html>")
    assert record.text == "The kettle sang\nand then it stopped.\n\nNext."


def test_html_that_is_only_scripts_and_navigation_is_unreadable():
    page = "<html><body><nav>Home | About</nav><script>" + "var x = 1;" * 500 + "</script></body></html>"
    with pytest.raises(Unreadable, match="no main text"):
        html.read(page.encode())


@pytest.mark.parametrize(
    "name, data, found",
    [
        ("a.pdf", b"Just some text, not a PDF.", "not a PDF file"),
        ("a.docx", b"%PDF-1.7\n...", "a PDF file"),
        ("a.txt", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "content is a PDF file; rename it to .pdf"),
        ("a.html", b"%PDF-1.4\n", "a PDF file"),
    ],
)
def test_an_extension_that_lies_about_the_content_is_named(name, data, found):
    assert found in readers.content_problem(readers.kind_of(name), data)


def test_honest_names_pass_the_content_check(tmp_path, typeset):
    writers.word_document(tmp_path / "w.docx", WORD_BLOCKS[:2])
    assert readers.content_problem("pdf", typeset[0].read_bytes()) == ""
    assert readers.content_problem("docx", (tmp_path / "w.docx").read_bytes()) == ""
    assert readers.content_problem("html", PAGE.encode()) == ""
    assert readers.content_problem("html", b"<p>A fragment of a page.</p>") == ""
    assert readers.content_problem("text", b"<html>plain notes about html</html>") == ""


def test_records_round_trip_through_the_index_folder(tmp_path, typeset):
    record = typeset[2]
    readers.save_record(tmp_path, "ab" * 32, record)
    loaded = readers.load_record(tmp_path, "ab" * 32, boxes=True)
    assert loaded == record and np.array_equal(np.asarray(loaded.boxes), record.boxes, equal_nan=True)
    assert readers.load_record(tmp_path, "cd" * 32) is None
    readers.record_paths(tmp_path, "ab" * 32)[1].write_bytes(b"damaged")
    assert readers.load_record(tmp_path, "ab" * 32, boxes=True) is None


def test_a_reader_that_hangs_is_stopped_and_the_next_file_still_converts(typeset):
    with Extractor(timeout=2, reader="hanging_reader:read") as extractor:
        reason = extractor.read("pdf", b"hang-me")
        assert "took longer than 2 s" in reason and "RAG_EXTRACT_TIMEOUT" in reason
        assert extractor.read("pdf", b"crash-me").startswith("the pdf reader crashed on it")
        record = extractor.read("pdf", typeset[0].read_bytes())
        assert record.text == typeset[2].text


def test_the_real_reader_runs_in_a_child_and_names_bad_files(typeset):
    with Extractor(timeout=60) as extractor:
        assert extractor.read("pdf", typeset[0].read_bytes()).text == typeset[2].text
        assert extractor.read("docx", b"not a zip").startswith("not a Word file")


def test_words_placed_one_by_one_with_wide_justified_gaps_stay_one_line():
    def draw(canvas):
        canvas.setFont("Helvetica", 11)
        y = 700
        for words in (["Justified", "lines", "have", "wide", "gaps."], ["Between", "the", "words", "they", "grow."]):
            x = 72
            for word in words:
                canvas.drawString(x, y, word)  # no space characters at all, as many typesetters write
                x += canvas.stringWidth(word, "Helvetica", 11) + 30
            y -= 14

    record = pdf.read(writers.pdf_bytes(draw))
    assert record.text == "Justified lines have wide gaps. Between the words they grow."


def test_every_reader_s_suffixes_are_read_by_default():
    """A new reader cannot be forgotten in RAG_EXTENSIONS: the default names exactly the types readers read."""
    from rag.config import Settings
    from rag.ingest import readers
    from rag.ingest.corpus import DOCUMENT_SUFFIXES

    read = set(readers.TEXT_SUFFIXES) | {s for m in readers._modules() for s in m.SUFFIXES}
    assert set(Settings().extensions) == set(DOCUMENT_SUFFIXES) == read

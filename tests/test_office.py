"""rag.ingest.readers.pptx, .xlsx and .csv: slides, spreadsheet rows and CSV rows as a text of record with places."""

from __future__ import annotations

import datetime
import io
import re
import zipfile

import pytest

from rag.ingest import readers
from rag.ingest.readers import Unreadable, pptx, rows, xlsx
from rag.ingest.readers import csv as csv_reader
from rag.ingest.readers.worker import Extractor


def deck_bytes(slides) -> bytes:
    """A .pptx written by python-pptx: each slide a dict with an optional title, text boxes as (left, top, text)
    in inches, groups as lists of such boxes, a table as rows, and notes."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    for spec in slides:
        slide = deck.slides.add_slide(deck.slide_layouts[5 if spec.get("title") else 6])  # title only, blank
        if spec.get("title"):
            slide.shapes.title.text = spec["title"]
        for left, top, text in spec.get("boxes", ()):
            slide.shapes.add_textbox(Inches(left), Inches(top), Inches(3), Inches(0.5)).text_frame.text = text
        for boxes in spec.get("groups", ()):
            group = slide.shapes.add_group_shape()
            for left, top, text in boxes:
                group.shapes.add_textbox(Inches(left), Inches(top), Inches(2), Inches(0.5)).text_frame.text = text
        if spec.get("table"):
            cells = spec["table"]
            table = slide.shapes.add_table(len(cells), len(cells[0]), Inches(1), Inches(6), Inches(6), Inches(1)).table
            for r, row in enumerate(cells):
                for c, text in enumerate(row):
                    table.cell(r, c).text = text
        if spec.get("notes"):
            slide.notes_slide.notes_text_frame.text = spec["notes"]
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def workbook_bytes(sheets, formats=None) -> bytes:
    """A .xlsx written by openpyxl: sheet name → rows (lists of values; [] is an empty row); `formats` maps
    (sheet, cell) → number format."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, sheet_rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for number, values in enumerate(sheet_rows, start=1):
            for column, value in enumerate(values, start=1):
                if value is not None:
                    sheet.cell(row=number, column=column, value=value)
    for (name, cell), number_format in (formats or {}).items():
        workbook[name][cell].number_format = number_format
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def csv_bytes(table, delimiter=",", encoding="utf-8") -> bytes:
    import csv

    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(table)
    return out.getvalue().encode(encoding)


def zip_bomb(member: str, megabytes: int = 20) -> bytes:
    """A zip holding `member` (a format's signature file) that declares `megabytes` of zeros, deflated ~1000-fold."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open(member, "w", force_zip64=True) as stream:
            for _ in range(megabytes):
                stream.write(b"\0" * (1 << 20))
    return out.getvalue()


def damaged(member: str) -> bytes:
    """A zip holding a format's signature file with broken XML in it."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr(member, "<unclosed")
    return out.getvalue()


def word_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("A Word document, not a deck.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# PowerPoint

DECK = [
    {
        "title": "Quarterly results",
        # added out of reading order: the bottom box first, the right box before the left one
        "boxes": [(1, 5, "Next steps follow."), (5, 2, "Costs fell.\nMargins held."), (1, 2.05, "Sales rose 12%.")],
        "groups": [[(4, 3.5, "Group right"), (1, 3.45, "Group left")]],
        "table": [["Region", "Q3"], ["North", "1,204"]],
        "notes": "Mention the new depot.\nThank the team.",
    },
    {"boxes": [(1, 1, "A slide without a title.")]},
    {"title": "Only notes below", "notes": "Nothing else."},
]


@pytest.fixture(scope="module")
def deck():
    return pptx.read(deck_bytes(DECK))


def test_a_slide_reads_title_first_then_its_shapes_top_to_bottom_left_to_right(deck):
    first_slide = deck.text[: deck.text.index("Notes:")]
    assert first_slide == (
        "Quarterly results\n\nSales rose 12%.\n\nCosts fell.\nMargins held.\n\nGroup left\n\nGroup right\n\n"
        "Next steps follow.\n\n| Region | Q3 |\n| North | 1,204 |\n\n"
    )


def test_speaker_notes_follow_their_slide_as_a_labelled_paragraph(deck):
    assert (
        "| North | 1,204 |\n\nNotes: Mention the new depot.\nThank the team.\n\nA slide without a title." in deck.text
    )
    assert deck.text.endswith("Only notes below\n\nNotes: Nothing else.")


def test_each_slide_and_its_notes_is_a_section(deck):
    def section(words):
        return deck.section_of(deck.text.index(words))

    assert section("Quarterly results") == section("| North") == "slide 1 · Quarterly results"
    assert section("Thank the team") == "slide 1 · Quarterly results › notes"
    assert section("A slide without a title") == "slide 2"
    assert section("Only notes below") == "slide 3 · Only notes below"
    assert section("Nothing else") == "slide 3 · Only notes below › notes"
    assert deck.page_of(0) is None


def test_footer_and_slide_number_placeholders_are_left_out():
    from pptx import Presentation
    from pptx.enum.shapes import PP_PLACEHOLDER

    presentation = Presentation(io.BytesIO(deck_bytes([{"title": "Plain", "boxes": [(1, 2, "Body text.")]}])))
    slide = presentation.slides[0]
    repeated = (PP_PLACEHOLDER.SLIDE_NUMBER, PP_PLACEHOLDER.FOOTER)
    for placeholder in slide.slide_layout.placeholders:
        if placeholder.placeholder_format.type in repeated:  # as PowerPoint adds them when they are switched on
            slide.shapes.clone_placeholder(placeholder)
    for placeholder in slide.placeholders:
        if placeholder.placeholder_format.type in repeated:
            placeholder.text_frame.text = "Company confidential 7"
    out = io.BytesIO()
    presentation.save(out)
    assert "Company confidential" in "".join(s.text_frame.text for s in Presentation(out).slides[0].placeholders)
    assert pptx.read(out.getvalue()).text == "Plain\n\nBody text."


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: b"PK\x03\x04 and nothing after it", "not a PowerPoint file: it should be a zip archive"),
        (word_bytes, "a zip archive without ppt/presentation.xml, so not a PowerPoint document"),
        (lambda: zip_bomb("ppt/presentation.xml"), "refused as a zip bomb"),
        (lambda: damaged("ppt/presentation.xml"), "damaged PowerPoint file"),
    ],
    ids=["not-a-zip", "word-zip", "zip-bomb", "damaged"],
)
def test_bad_decks_are_unreadable_with_their_reason(make, reason):
    with pytest.raises(Unreadable, match=re.escape(reason)):
        pptx.read(make())


def test_decks_past_the_slide_or_character_limit_are_refused_by_name(monkeypatch):
    data = deck_bytes(DECK)
    monkeypatch.setattr(pptx, "MAX_SLIDES", 2)
    with pytest.raises(Unreadable, match=re.escape("3 slides, over the 2-slide limit")):
        pptx.read(data)
    monkeypatch.setattr(pptx, "MAX_SLIDES", 100)
    monkeypatch.setattr(pptx, "MAX_CHARACTERS", 50)
    with pytest.raises(Unreadable, match=re.escape("over 50 characters of text by slide 1")):
        pptx.read(data)


# Excel

SALES = {
    "Sales": [
        [],
        ["Region", "Q3", "Closed on", None, "Share"],
        ["North", 1204, datetime.datetime(2026, 3, 2), None, 0.25],
        ["South", 900.0, datetime.date(2026, 4, 1), "stray cell", 0.125],
        [],
        ["East", "=B3+B4", None, None, None],
        ["West", "Shipped late.\nPaid in full", None, None, None],
    ],
    "Notes": [["Only a header", "row"]],
}
FORMATS = {("Sales", "B3"): "#,##0", ("Sales", "E3"): "0%", ("Sales", "E4"): "0.0%"}


@pytest.fixture(scope="module")
def sales():
    return xlsx.read(workbook_bytes(SALES, FORMATS))


def test_each_row_is_one_line_that_carries_its_header(sales):
    assert sales.text == (
        "Region: North; Q3: 1,204; Closed on: 2026-03-02; Share: 25%\n\n"
        "Region: South; Q3: 900; Closed on: 2026-04-01; D: stray cell; Share: 12.5%\n\n"
        "Region: East\n\n"  # a formula is never evaluated: openpyxl wrote no cached value
        "Region: West; Q3: Shipped late. Paid in full\n\n"
        "Only a header; row"
    )


def test_each_row_is_a_section_naming_its_sheet_and_its_own_row_number(sales):
    def section(words):
        return sales.section_of(sales.text.index(words))

    assert section("Region: North") == section("Share: 25%") == "Sales › row 3"
    assert section("Region: South") == "Sales › row 4"
    assert section("Region: East") == "Sales › row 6"
    assert section("Paid in full") == "Sales › row 7"
    assert section("Only a header") == "Notes › row 1"


def test_a_row_with_prose_cells_is_never_joined_to_the_next_row_in_a_passage(sales):
    from rag.ingest.chunking import split_sentences

    units = [sales.text[a:b] for a, b in split_sentences(sales.text)]
    assert "Region: South; Q3: 900; Closed on: 2026-04-01; D: stray cell; Share: 12.5%" in units
    assert all("\n" not in unit for unit in units)


@pytest.mark.parametrize(
    "value, number_format, shown",
    [
        (1204, "General", "1204"),
        (1204.0, "General", "1204"),
        (1204, "#,##0", "1,204"),
        (1204.5, "#,##0.00", "1,204.50"),
        (0.1 + 0.2, "General", "0.3"),
        (0.256, "0.0%", "25.6%"),
        (12, '"$"#,##0.00', "$12.00"),
        (-3, "#,##0;[Red]-#,##0", "-3"),
        (2026, "0", "2026"),
    ],
)
def test_numbers_read_as_their_format_shows_them(value, number_format, shown):
    assert xlsx.format_number(value, number_format) == shown


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: b"PK\x03\x04 and nothing after it", "not a Excel file: it should be a zip archive"),
        (lambda: deck_bytes(DECK[:1]), "a zip archive without xl/workbook.xml"),
        (lambda: zip_bomb("xl/workbook.xml"), "refused as a zip bomb"),
        (lambda: damaged("xl/workbook.xml"), "damaged Excel file"),
    ],
    ids=["not-a-zip", "pptx-zip", "zip-bomb", "damaged"],
)
def test_bad_workbooks_are_unreadable_with_their_reason(make, reason):
    with pytest.raises(Unreadable, match=re.escape(reason)):
        xlsx.read(make())


def test_workbooks_past_the_cell_limit_or_too_sparse_are_refused_by_name(monkeypatch):
    data = workbook_bytes(SALES)
    monkeypatch.setattr(xlsx, "MAX_CELLS", 8)
    with pytest.raises(Unreadable, match=re.escape("more than 8 filled cells, the limit for one workbook")):
        xlsx.read(data)
    sparse = workbook_bytes({"Far": [["Name", "Value"]] + [["row", None] + [None] * 700 + [n] for n in range(20)]})
    monkeypatch.setattr(xlsx, "MAX_CELLS", 1_000)
    monkeypatch.setattr(xlsx, "MAX_POSITIONS", 5_000)
    with pytest.raises(Unreadable, match=re.escape("more than 5,000 cell positions, nearly all empty")):
        xlsx.read(sparse)


# CSV

VISITS = [
    ["Station", "Bird", "Count", "Note"],
    ["Marsh Gate", "bittern", "17", ""],
    ["Reed Bed", "marsh harrier", "4", "Seen at dusk.\nTwo juveniles"],
    [],
    ["Old Pier", "avocet", "", "none counted"],
]


def test_csv_rows_carry_their_header_and_are_labelled_with_their_line():
    record = csv_reader.read(csv_bytes(VISITS))
    assert record.text == (
        "Station: Marsh Gate; Bird: bittern; Count: 17\n\n"
        "Station: Reed Bed; Bird: marsh harrier; Count: 4; Note: Seen at dusk. Two juveniles\n\n"
        "Station: Old Pier; Bird: avocet; Note: none counted"
    )
    assert record.section_of(record.text.index("Station: Marsh Gate")) == "row 2"
    assert record.section_of(record.text.index("Two juveniles")) == "row 3"
    assert record.section_of(record.text.index("avocet")) == "row 6"  # the quoted cell spans lines 3 and 4


@pytest.mark.parametrize(
    "data",
    [
        csv_bytes(VISITS, delimiter="\t"),
        csv_bytes(VISITS, delimiter=";"),
        csv_bytes(VISITS, encoding="utf-8-sig"),
        csv_bytes(VISITS, encoding="utf-16"),
        csv_bytes([row + ["Café"] for row in VISITS], encoding="cp1252"),
    ],
    ids=["tabs", "semicolons", "utf-8-bom", "utf-16", "cp1252"],
)
def test_csv_dialects_and_encodings_are_found(data):
    assert readers.content_problem("csv", data) == ""
    record = csv_reader.read(data)
    assert record.text.startswith("Station: Marsh Gate; Bird: bittern; Count: 17")
    assert record.section_of(record.text.index("Reed Bed")) == "row 3"


def test_a_csv_with_only_a_header_keeps_it_and_a_short_row_names_extra_columns():
    assert csv_reader.read(b"Name,Town\n").text == "Name; Town"
    record = csv_reader.read(b"Name,Town\nAnn,Leeds,extra\n")
    assert record.text == "Name: Ann; Town: Leeds; column 3: extra"


def test_a_csv_in_a_broken_encoding_is_skipped_naming_the_encoding():
    data = b"Name,Note\nAnn," + b"\x81\x8d\x90\x9d\n"
    assert readers.content_problem("csv", data) == ""
    with pytest.raises(Unreadable, match="not valid UTF-8 and its encoding cannot be told reliably"):
        csv_reader.read(data)


def test_a_csv_past_the_cell_limit_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(csv_reader, "MAX_CELLS", 5)
    with pytest.raises(Unreadable, match=re.escape("more than 5 filled cells, the limit for one file")):
        csv_reader.read(csv_bytes(VISITS))


def test_an_unclosed_quote_is_named():
    data = b'Name,Note\nAnn,"' + b"x" * 200_000 + b"\n"
    with pytest.raises(Unreadable, match="not readable as CSV at line"):
        csv_reader.read(data)


@pytest.mark.parametrize(
    "data, plausible",
    [
        (csv_bytes(VISITS), True),
        (b"one column\nonly\nhere\n", False),
        (b"Just a sentence of prose without commas.\nAnd another.\n", False),
        (b"a,b\n\x00\x01\x02,\x03\n", False),
    ],
)
def test_a_csv_is_plausible_when_its_sampled_rows_mostly_hold_two_columns(data, plausible):
    assert csv_reader.plausible(data) is plausible
    assert csv_reader.sniff(data) is False


# The content decides the type


@pytest.mark.parametrize(
    "kind, make, found",
    [
        ("pptx", word_bytes, "named .pptx but its content is a DOCX file"),
        ("xlsx", lambda: deck_bytes(DECK[:1]), "named .xlsx but its content is a PPTX file"),
        ("pptx", lambda: b"plain words", "named .pptx but its content is not a PowerPoint (.pptx) file"),
        ("csv", lambda: workbook_bytes(SALES), "named .csv but its content is a XLSX file"),
        ("csv", lambda: b"%PDF-1.7\n", "a PDF file"),
    ],
)
def test_a_name_that_lies_about_the_content_is_refused(kind, make, found):
    assert found in readers.content_problem(kind, make())


def test_the_names_choose_the_readers_and_honest_files_pass():
    assert [readers.kind_of(n) for n in ("a.PPTX", "b.xlsx", "c.csv", "d.tsv")] == ["pptx", "xlsx", "csv", "csv"]
    assert readers.content_problem("pptx", deck_bytes(DECK[:1])) == ""
    assert readers.content_problem("xlsx", workbook_bytes(SALES)) == ""
    assert readers.sniff(deck_bytes(DECK[:1])) == "pptx" and readers.sniff(workbook_bytes(SALES)) == "xlsx"


def test_the_readers_run_in_the_child_process():
    with Extractor(timeout=60) as extractor:
        assert extractor.read("pptx", deck_bytes(DECK)).text.startswith("Quarterly results\n\nSales rose 12%.")
        assert extractor.read("xlsx", workbook_bytes(SALES)).text.startswith("Region: North; Q3: 1204;")
        assert extractor.read("csv", csv_bytes(VISITS)).sections[0] == (0, "row 2")
        assert extractor.read("pptx", zip_bomb("ppt/presentation.xml")).endswith("refused as a zip bomb")


def test_row_text_keeps_rows_apart_and_names_its_limit():
    built = rows.RowText(max_chars=40)
    built.add_table([(1, ["A", "B"]), (2, ["x", ""]), (3, ["", "y"])], str, lambda index: "?")
    assert built.record("csv").text == "A: x\n\nB: y" and built.sections == [(0, "2"), (6, "3")]
    with pytest.raises(Unreadable, match=re.escape("more than 40 characters of text")):
        built.add("z" * 40, "4")


# The real path


def test_a_fact_in_a_slide_a_spreadsheet_row_and_a_csv_row_is_each_answered_with_its_place(
    make_settings, real_embedder
):
    from rag.answer.quotes import answer
    from rag.build.indexer import build
    from rag.index import store
    from rag.search import Retriever

    settings = make_settings(model=real_embedder.name, extensions=(".txt", ".pptx", ".xlsx", ".csv"))
    corpus = settings.corpus
    (corpus / "talk.pptx").write_bytes(
        deck_bytes(
            [
                {"title": "Welcome", "boxes": [(1, 2, "Thank you all for coming to the coastal heritage day.")]},
                {
                    "title": "Lighthouses",
                    "boxes": [(1, 2, "The Fastnet lighthouse was first lit in 1854.")],
                    "notes": "Pause here for questions.",
                },
                {"title": "Harbours", "boxes": [(1, 2, "Crookhaven harbour shelters fishing boats in winter.")]},
            ]
        )
    )
    (corpus / "harvest.xlsx").write_bytes(
        workbook_bytes(
            {
                "Harvest": [
                    ["Orchard", "Variety", "Crates picked"],
                    ["Riverside", "Cox", 230],
                    ["Hillside", "Bramley", 412],
                    ["Church Lane", "Egremont Russet", 95],
                ]
            }
        )
    )
    (corpus / "birds.csv").write_bytes(csv_bytes([["Station", "Bird", "Count"]] + VISITS[1:3]))
    (corpus / "notes.txt").write_text(
        "Bramley apples are a cooking variety. Lighthouses guide ships along the coast. Herons nest in spring.\n",
        encoding="utf-8",
    )
    summary = build(settings, embedder_factory=lambda name: real_embedder)
    assert not summary.skipped, summary.skipped
    loaded = store.load(settings.index)
    retriever = Retriever(settings)
    for question, source, fact, section in [
        ("When was the Fastnet lighthouse first lit?", "talk.pptx", "1854", "slide 2 · Lighthouses"),
        ("How many crates of Bramley did the Hillside orchard pick?", "harvest.xlsx", "412", "Harvest › row 3"),
        ("How many bitterns were counted at Marsh Gate?", "birds.csv", "17", "row 2"),
    ]:
        result = answer(question, retriever, settings)
        assert not result.abstained, (question, result.text)
        first = result.citations[0]
        assert first.source == source and fact in first.quote and first.section == section, (question, first)
        record = readers.load_record(loaded.texts_folder(source), loaded.manifest.files[source].sha256)
        assert record.text[first.start : first.end] == first.quote

"""Tables in PDFs (reportlab's platypus, ruled and bare): each row one line `| cell | cell |`, whole and in order."""

from __future__ import annotations

import io

import pytest
from test_pdf_geometry import text_under_marks

from rag.ingest.readers import pdf

ROWS = [
    ["Region", "Quarter", "Units sold", "Revenue"],
    ["North", "Q3", "1,204", "€ 18,060"],
    ["South", "", "987", "€ 14,805"],
    ["East coast", "Q4", "2,310", "€ 34,650"],
]
BEFORE = "Sales went up in the third quarter, as the table shows."
AFTER = "The east coast led the fourth quarter."


def table_pdf(rows, ruled: bool) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    style = getSampleStyleSheet()["Normal"]
    grid = Table(rows)
    if ruled:
        grid.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4).build(
        [Paragraph(BEFORE, style), Spacer(1, 12), grid, Spacer(1, 12), Paragraph(AFTER, style)]
    )
    return out.getvalue()


@pytest.mark.parametrize("ruled", [True, False])
def test_each_row_of_a_table_is_one_line_of_its_own_in_order_and_the_prose_around_it_stays(ruled):
    record = pdf.read(table_pdf(ROWS, ruled))
    lines = ["| " + " | ".join(row) + " |" for row in ROWS]
    assert record.text.split("\n\n") == [BEFORE, *lines, AFTER]  # the empty cell stays: "| South |  | 987 |"


def test_a_quoted_row_is_marked_over_its_cells_and_nothing_else():
    data = table_pdf(ROWS, ruled=True)
    record = pdf.read(data)
    quote = "| North | Q3 | 1,204 | € 18,060 |"
    under, _, rectangles = text_under_marks(data, 1, record, quote)
    assert under.split() == ["North", "Q3", "1,204", "€", "18,060"] and len(rectangles) == 4  # one mark a cell


def test_a_row_with_one_cell_inside_a_table_stays_a_row_and_a_short_sentence_under_it_is_not_one():
    rows = [*ROWS[:2], ["Total", "", "", ""], *ROWS[2:]]
    record = pdf.read(table_pdf(rows, ruled=False))
    assert "| Total |  |  |  |" in record.text.split("\n\n")
    assert record.text.endswith("\n\n" + AFTER)


def test_two_columns_of_cells_are_left_to_the_layout():
    """A two-column table cannot be told from two columns of prose: its rows are not made into lines."""
    record = pdf.read(table_pdf([["Name", "Role"], ["Ann Lee", "Editor"], ["Bo Chan", "Reporter"]], ruled=False))
    assert "|" not in record.text and "Ann Lee" in record.text


def test_two_columns_of_justified_prose_are_never_taken_for_a_table():
    """Short last lines and wide justified gaps on both sides of a gutter line up like channels of a table; each
    column is looked at alone, so they never do."""
    from reportlab.lib.enums import TA_JUSTIFY
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph

    words = "the survey team logged every marker along the northern ridge before dawn while rain fell".split()
    style = ParagraphStyle("body", fontName="Times-Roman", fontSize=9.5, leading=11.5, alignment=TA_JUSTIFY)
    texts = [" ".join(words[(i * 5 + j) % len(words)] for j in range(8 + 13 * (i % 4))) + "." for i in range(40)]
    out = io.BytesIO()
    width, height = A4
    frames = [
        Frame(50, 50, (width - 124) / 2, height - 100),
        Frame(74 + (width - 124) / 2, 50, (width - 124) / 2, height - 100),
    ]
    document = BaseDocTemplate(out, pagesize=A4, pageTemplates=[PageTemplate(frames=frames)])
    document.build([Paragraph(text, style) for text in texts])
    record = pdf.read(out.getvalue())
    assert "| " not in record.text
    assert sum(text in record.text for text in texts) >= 0.9 * len(texts)


def _line(text: str, left: float, right: float, baseline: float):
    import numpy as np

    from rag.ingest.readers.layout import Fragment

    step = (right - left) / len(text)
    boxes = np.array([[left + i * step, baseline, left + (i + 1) * step, baseline + 9.5] for i in range(len(text))])
    return Fragment(0, text, boxes)


def test_a_gutter_is_not_a_table_s_channel():
    """Two lines of the left column, each spread with one wide gap at the same place, beside the right column's
    lines: with the gutter they make two channels; each column alone has one at most, so no table is found."""
    from rag.ingest.readers.tables import with_rows

    frame = (0.0, 0.0, 595.0, 842.0)
    fragments = []
    for n in range(12):
        baseline = 760 - 11.5 * n
        if n in (5, 6):  # a short, wide-spaced pair of lines in the left column
            fragments += [_line("alpha beta", 50, 120, baseline), _line("gamma", 160, 200, baseline)]
        else:
            fragments.append(_line("a full line of the left column of prose here", 50, 280, baseline))
        fragments.append(_line("a full line of the right column of prose, too", 300, 545, baseline))
    assert not any(f.row for f in with_rows(fragments, frame))
    three_columns = [
        _line(t, x0, x1, 700 - 11.5 * n)
        for n in range(3)
        for t, x0, x1 in (("a", 50, 60), ("b", 200, 210), ("c", 400, 410))
    ]
    assert sum(f.row for f in with_rows(three_columns, frame)) == 3  # the same cells without prose around: a table

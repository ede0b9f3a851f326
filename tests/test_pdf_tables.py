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

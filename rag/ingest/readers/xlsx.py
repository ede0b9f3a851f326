"""Excel (.xlsx) through openpyxl, read-only, with the values Excel cached: a formula is never evaluated.

In each sheet the first row with a value is the header; every later row becomes one line that carries its
header, "Region: North; Q3: 1,204" (empty cells left out), so a quote is a whole row with its meaning. Each row
is a section, "Sales › row 12", numbered as the spreadsheet numbers it, and a paragraph of its own (see
`rows.ROW_SEPARATOR`). Numbers read as the cell's format shows them, near enough; dates as ISO dates.
"""

from __future__ import annotations

import datetime
import functools
import io
import re

from rag.ingest.readers import SECTION_SEPARATOR, TextRecord, Unreadable, archive
from rag.ingest.readers.rows import RowText, cell_text

KIND = "xlsx"
NAME = "Excel (.xlsx) file"
SUFFIXES = (".xlsx",)
MAX_CELLS = 1_000_000
"""Most filled cells a workbook may hold; a larger one is refused, named (split it, or export what matters)."""
MAX_CHARACTERS = 20_000_000
"""Most characters its text of record may reach (one long string can be shared by a million cells)."""
MAX_ROWS = 1_048_576
"""Excel's own last row: a sheet that claims rows past it is damaged, and walking to it would never end."""
MAX_POSITIONS = 50_000_000
"""Most cell positions (filled or empty) the reader walks: a sparse sheet with a far-off cell in every row is
refused, named, instead of running until the reader is stopped."""
_DECIMALS = re.compile(r"0\.(0+)")
_CURRENCY = re.compile(r"[$€£¥]")


def sniff(data: bytes) -> bool:
    """A zip archive holding `xl/workbook.xml`."""
    return archive.holds(data, "xl/workbook.xml")


def check_archive(data: bytes) -> None:
    """Unreadable unless `data` is a sound Excel zip whose members inflate to a sane size (asked of uploads too)."""
    archive.check(data, "xl/workbook.xml", "Excel")


def read(data: bytes) -> TextRecord:
    """The text of record of a .xlsx: per sheet, one "Header: value; …" line per row after the header row."""
    check_archive(data)
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many kinds for a damaged part
        raise Unreadable(f"damaged Excel file ({type(error).__name__}: {error}); save it again from Excel") from None
    built, budget = RowText(MAX_CHARACTERS), _Budget()
    try:
        for sheet in workbook.worksheets:
            label = functools.partial(_label, sheet.title)
            built.add_table(_rows(sheet, budget), label, _column_letter)
    except Unreadable:
        raise
    except Exception as error:  # a damaged sheet shows only when it is read
        raise Unreadable(f"damaged Excel file ({type(error).__name__}: {error}); save it again from Excel") from None
    finally:
        workbook.close()
    return built.record(KIND)


class _Budget:
    """Counts what the reader has walked and refuses, named, past a limit."""

    def __init__(self):
        self.cells = self.positions = 0

    def row(self, sheet: str, number: int, width: int, filled: int) -> None:
        self.positions += width
        self.cells += filled
        if number > MAX_ROWS:
            raise Unreadable(f"sheet {sheet!r} has rows past Excel's last row ({MAX_ROWS:,}): a damaged file")
        if self.cells > MAX_CELLS:
            raise Unreadable(f"more than {MAX_CELLS:,} filled cells, the limit for one workbook; split it")
        if self.positions > MAX_POSITIONS:
            raise Unreadable(
                f"more than {MAX_POSITIONS:,} cell positions, nearly all empty; remove the stray far-off cells"
            )


def _rows(sheet, budget: _Budget):
    """(row number as the sheet numbers it, cell texts) for every row of a sheet, within the budget."""
    sheet.reset_dimensions()  # a declared size may lie: each row is as wide as its last cell
    number = 0
    for cells in sheet.iter_rows():
        number = next((cell.row for cell in cells if getattr(cell, "row", None)), number + 1)
        texts = [_text(cell) if cell.value is not None else "" for cell in cells]
        budget.row(sheet.title, number, len(cells), sum(map(bool, texts)))
        yield number, texts


def _label(sheet: str, number: int) -> str:
    return f"{sheet}{SECTION_SEPARATOR}row {number}"


def _column_letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return get_column_letter(index + 1)


def _text(cell) -> str:
    """A cell's value as Excel shows it, near enough: whole numbers without ".0", grouping, decimals and percent
    from the cell's number format, dates as ISO dates, text on one line."""
    value = cell.value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime.datetime):
        if value.time() == datetime.time(0):
            return value.date().isoformat()
        return value.replace(microsecond=0).isoformat(sep=" ")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, (int, float)):
        return format_number(value, getattr(cell, "number_format", None) or "General")
    return cell_text(str(value))


def format_number(value: float, number_format: str) -> str:
    """`value` as a number format shows it, near enough: "#,##0" groups thousands, "0.00" fixes decimals, "0%" is a
    percent, a currency sign stays where the format puts it; decimals a format would hide by rounding are kept, and
    otherwise up to 15 significant digits are shown, as "General" does."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    pattern = number_format.split(";", 1)[0]
    percent = "%" in pattern
    if percent:
        value = value * 100
    group = "," if "#,##" in pattern or "0,0" in pattern else ""
    decimals = _DECIMALS.search(pattern)
    if decimals:
        text = f"{value:{group}.{len(decimals.group(1))}f}"
    elif float(value).is_integer() and abs(value) < 1e15:
        text = f"{int(value):{group}}"
    else:
        text = f"{value:{group}.15g}"
    currency = _CURRENCY.search(pattern)
    if currency:
        digit = re.search(r"[0#]", pattern)
        text = currency.group() + text if digit is None or currency.start() < digit.start() else text + currency.group()
    return text + "%" if percent else text

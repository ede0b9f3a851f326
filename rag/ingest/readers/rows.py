"""Tables read row by row (spreadsheets, CSV): each row becomes one line that carries its header, so a quote is a
whole row with its meaning ("Region: North; Q3: 1,204") and its section names the row it came from."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from rag.ingest.readers import TextRecord, Unreadable

PAIR_SEPARATOR = "; "
ROW_SEPARATOR = "\n\n"
"""Between rows: a blank line, so that every row is a paragraph of its own. The chunker reads a paragraph line by
line only when it has three lines or more and few of them carry sentence punctuation; otherwise it cuts the
paragraph into sentences, which run on across single line breaks. Rows with prose cells ("Note: Shipped late.
Paid in full") or a table of two rows would then give quotes that start in one row and end in the next."""


def cell_text(value: str) -> str:
    """A cell's text on one line: runs of white space (line breaks included) become one space."""
    return " ".join(value.split())


def row_line(header: Sequence[str], cells: Sequence[str], unnamed: Callable[[int], str]) -> str:
    """ "Header: value; Header: value" for the non-empty cells of a row; a column whose header is empty is named
    by `unnamed(index)` (index from 0)."""
    pairs = []
    for index, value in enumerate(cells):
        if value:
            name = header[index] if index < len(header) and header[index] else unnamed(index)
            pairs.append(f"{name}: {value}")
    return PAIR_SEPARATOR.join(pairs)


class RowText:
    """The text of record of one or more tables as it is built: rows and the section label of each."""

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        self.parts: list[str] = []
        self.sections: list[tuple[int, str]] = []
        self.length = 0

    def add_table(
        self, rows: Iterable[tuple[int, Sequence[str]]], label: Callable[[int], str], unnamed: Callable[[int], str]
    ) -> None:
        """Add a table given as (row number, cell texts): its first row with a value is the header, every later one
        a line labelled `label(number)`. A table of its header alone gives that row's values, so nothing is lost."""
        header: Sequence[str] | None = None
        header_number, lines = 0, 0
        for number, cells in rows:
            if not any(cells):
                continue
            if header is None:
                header, header_number = cells, number
                continue
            line = row_line(header, cells, unnamed)
            if line:
                self.add(line, label(number))
                lines += 1
        if header is not None and not lines:
            self.add(PAIR_SEPARATOR.join(name for name in header if name), label(header_number))

    def add(self, line: str, label: str) -> None:
        """Add one row of text whose section is `label`; Unreadable, named, past the character limit."""
        if self.parts:
            self.parts.append(ROW_SEPARATOR)
            self.length += len(ROW_SEPARATOR)
        self.sections.append((self.length, label))
        self.parts.append(line)
        self.length += len(line)
        if self.length > self.max_chars:
            raise Unreadable(
                f"more than {self.max_chars:,} characters of text, the limit for one file; split it into smaller files"
            )

    def record(self, kind: str) -> TextRecord:
        return TextRecord(kind=kind, text="".join(self.parts), sections=tuple(self.sections))

"""Comma- and tab-separated values (.csv, .tsv) through the standard library: each row one line with its header.

The file is decoded as plain text files are; its dialect (delimiter, quoting) is sniffed on a sample. The first
non-empty row is the header; every later row becomes "Header: value; Header: value" (empty cells left out), a
paragraph of its own whose section is "row N", N the line of the file the row starts on (the header is row 1).
"""

from __future__ import annotations

import csv
import io

from rag.ingest.readers import TextRecord, Unreadable
from rag.ingest.readers.rows import RowText, cell_text

KIND = "csv"
NAME = "CSV (comma- or tab-separated values) file"
SUFFIXES = (".csv", ".tsv")
DELIMITERS = ",\t;|"
SAMPLE_BYTES = 32_768
"""Bytes of the file's start that are sampled to tell whether it is CSV and which dialect it has."""
SNIFF_CHARS = 4_096
"""Characters of the sample csv.Sniffer looks at: its time grows with the square of a hostile sample (a run of
quotes), and this check runs in the build itself, not in the reader's child."""
SAMPLE_ROWS = 50
"""Rows of the sample that must mostly hold two columns or more for the file to pass as CSV."""
MAX_CELLS = 1_000_000
"""Most filled cells one file may hold; a larger one is refused, named (split it)."""
MAX_CHARACTERS = 20_000_000
"""Most characters its text of record may reach (each value carries its header, so it outgrows the file)."""


def sniff(data: bytes) -> bool:
    """CSV has no signature of its own."""
    return False


def plausible(data: bytes) -> bool:
    """The file's start is text (not binary) and its rows mostly hold two columns or more. Text in an encoding
    that cannot be told passes, so that reading it names the encoding instead of calling it no CSV."""
    sample = _sample(data)
    if sample is None:
        return False
    try:
        rows = [row for row in csv.reader(io.StringIO(sample, newline=""), _dialect(sample)) if any(row)]
    except csv.Error:
        return False
    if len(data) > SAMPLE_BYTES:
        rows = rows[:-1]  # the last row of a cut sample may be cut too
    rows = rows[:SAMPLE_ROWS]
    return bool(rows) and sum(len(row) >= 2 for row in rows) * 2 > len(rows)


def read(data: bytes) -> TextRecord:
    """The text of record: one "Header: value; …" line per row after the header, each a section "row N"."""
    from rag.ingest.readers.text import decode

    decoded = decode(data)
    if isinstance(decoded, str):
        raise Unreadable(decoded)
    text = decoded[0].removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(_sample(data) or ""))
    built = RowText(MAX_CHARACTERS)
    try:
        built.add_table(_rows(reader), lambda number: f"row {number}", lambda index: f"column {index + 1}")
    except csv.Error as error:
        raise Unreadable(f"not readable as CSV at line {reader.line_num} ({error}); check its quoting") from None
    return built.record(KIND)


def _rows(reader):
    """(line the row starts on, cell texts) for each row, within the cell limit."""
    cells, line = 0, 1
    for row in reader:
        texts = [cell_text(value) for value in row]
        cells += sum(map(bool, texts))
        if cells > MAX_CELLS:
            raise Unreadable(f"more than {MAX_CELLS:,} filled cells, the limit for one file; split it")
        yield line, texts
        line = reader.line_num + 1


def _sample(data: bytes) -> str | None:
    """The decoded start of the file, cut after its last whole line (undecodable bytes replaced, so that the
    dialect can still be found); None for a binary file."""
    from rag.ingest.readers.text import decode

    head = data[:SAMPLE_BYTES]
    if len(data) > len(head):
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            head = data  # UTF-16 is decoded whole rather than cut between the bytes of a character
        elif b"\n" in head:
            head = head[: head.rindex(b"\n") + 1]  # never cut a character in two
    decoded = decode(head)
    if isinstance(decoded, str):
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            decoded = (head.decode("utf-16", errors="replace"), "utf-16")
        elif b"\x00" in head:
            return None
        else:
            decoded = (head.decode("utf-8", errors="replace"), "utf-8")
    return decoded[0].removeprefix("\ufeff")[:SAMPLE_BYTES]


def _whole_lines(text: str, limit: int) -> str:
    """The start of `text`, at most `limit` characters, cut after its last whole line when it holds one."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[: cut + 1] if cut > 0 else text[:limit]


def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    """The sample's dialect as csv.Sniffer finds it, else the delimiter found in most of its lines."""
    try:
        dialect = csv.Sniffer().sniff(_whole_lines(sample, SNIFF_CHARS), delimiters=DELIMITERS)
        if dialect.quotechar not in ("'", '"'):
            dialect.quotechar = '"'
        return dialect
    except csv.Error:
        pass
    lines = [line for line in sample.split("\n") if line.strip()][:SAMPLE_ROWS]
    best = max(DELIMITERS, key=lambda delimiter: sum(delimiter in line for line in lines))
    return type("Found", (csv.excel,), {"delimiter": best})

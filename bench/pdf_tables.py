"""Tables in PDFs: are their rows read whole and in order?

    .venv/bin/python bench/pdf_tables.py              # 24 tables, half ruled, half not
    .venv/bin/python bench/pdf_tables.py --tables 60

Tables of 3 to 5 columns and 3 to 8 rows (words, multi-word names, numbers, currency, dates; some cells empty)
are typeset by reportlab's platypus between paragraphs of prose, half with a ruled grid and half bare, on one-
column pages. Each PDF is read by rag's PDF reader twice, side by side: with table rows found
(`rag.ingest.readers.tables`) and with that step left out. A row is read whole when its cells, in order, make one
paragraph of the text of record on its own (`| a | b | c |` with rows found; `a b c` without), and in order when the rows of each table come in the order drawn. Prose around the tables must
stay as it was: every paragraph is checked verbatim. Target: every row whole and in order.

Prose must not be taken for a table: `--articles N` SQuAD v1.1 dev articles typeset by bench/typeset.py (two
justified columns, hyphens, running headers) are read too, and every row the step finds in them is counted
(target: none).
"""

from __future__ import annotations

import argparse
import io
import random
import time

from harness import finish, machine, print_machine

from rag.ingest.readers import pdf, tables

WORDS = "amber basalt cedar delta ember fjord granite harbour indigo juniper kestrel lagoon meadow".split()
PROSE = (
    "The survey team walked the northern ridge at dawn and logged every marker they passed on the way. "
    "Each figure below was checked twice against the field notes before it was written into this report."
)


def cell(rng: random.Random, kind: str) -> str:
    if rng.random() < 0.06:
        return ""
    if kind == "word":
        return " ".join(rng.sample(WORDS, rng.choice((1, 1, 2)))).capitalize()
    if kind == "number":
        return f"{rng.randint(0, 99_999):,}"
    if kind == "money":
        return f"€ {rng.randint(10, 9_999)}.{rng.randint(0, 99):02d}"
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def table(rng: random.Random) -> list[list[str]]:
    columns = rng.randint(3, 5)
    kinds = ["word"] + [rng.choice(("word", "number", "money", "date")) for _ in range(columns - 1)]
    header = [rng.choice(WORDS).capitalize() + f" {i + 1}" for i in range(columns)]
    rows = [[cell(rng, kind) for kind in kinds] for _ in range(rng.randint(3, 8))]
    for row in rows:
        row[0] = row[0] or rng.choice(WORDS).capitalize()  # a row is named by its first cell
    return [header] + rows


def document(drawn: list[list[list[str]]], ruled: bool) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    style = getSampleStyleSheet()["Normal"]
    story = []
    for rows in drawn:
        story += [Paragraph(PROSE, style), Spacer(1, 10)]
        grid = Table(rows)
        if ruled:
            grid.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
        story += [grid, Spacer(1, 10)]
    story.append(Paragraph(PROSE, style))
    out = io.BytesIO()
    SimpleDocTemplate(out, pagesize=A4).build(story)
    return out.getvalue()


def score(text: str, drawn: list[list[list[str]]], found_rows: bool) -> tuple[int, int, int]:
    """(rows read whole, rows also in order, prose paragraphs verbatim) in one document's text of record."""
    paragraphs = text.split("\n\n")
    whole = ordered = 0
    for rows in drawn:
        last = -1
        for row in rows:
            line = "| " + " | ".join(row) + " |" if found_rows else " ".join(c for c in row if c)
            at = paragraphs.index(line) if line in paragraphs else -1
            whole += at >= 0
            ordered += at > last
            last = max(last, at)
    prose = sum(1 for p in paragraphs if p == PROSE)
    return whole, ordered, prose


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--articles", type=int, default=12, help="typeset SQuAD articles checked for false tables")
    args = parser.parse_args()
    started = time.perf_counter()
    info = machine()
    print_machine(info)
    rng = random.Random(args.seed)
    documents = []
    for n in range(0, args.tables, 3):  # three tables a document
        drawn = [table(rng) for _ in range(min(3, args.tables - n))]
        documents.append((drawn, document(drawn, ruled=(n // 3) % 2 == 0)))
    rows = sum(len(t) for drawn, _ in documents for t in drawn)
    paragraphs = sum(len(drawn) + 1 for drawn, _ in documents)
    figures = {"machine": info, "tables": args.tables, "rows": rows}
    found = tables.with_rows
    for name, step in (("rows found", found), ("without the table step", lambda fragments, frame: fragments)):
        missed = []
        pdf.with_rows = step
        whole = ordered = prose = 0
        for drawn, data in documents:
            text = pdf.read(data).text
            w, o, p = score(text, drawn, found_rows=step is found)
            if step is found and w < sum(len(t) for t in drawn):
                missed.append(text)
            whole, ordered, prose = whole + w, ordered + o, prose + p
        figures[name] = {"whole": whole, "in_order": ordered, "prose_verbatim": prose}
        print(
            f"{name:24}: {whole}/{rows} rows whole ({whole / rows:.1%}), {ordered}/{rows} in order; "
            f"prose paragraphs verbatim {prose}/{paragraphs}"
        )
        for text in missed[:2]:
            print("   a document with a row not read whole:", repr(text[:1500]))
    pdf.with_rows = found
    met = figures["rows found"]["in_order"] == rows and figures["rows found"]["prose_verbatim"] == paragraphs
    print(
        f"{args.tables} tables ({rows} rows), half ruled: every row whole and in order: {'met' if met else 'NOT met'}"
    )
    figures["false_rows"] = false_rows(args.articles)
    return finish("pdf_tables", figures, started)


def false_rows(articles: int) -> dict:
    """Rows the table step finds in two-column typeset prose, where there is no table."""
    import tempfile
    from pathlib import Path

    from harness import SQUAD
    from typeset import typeset

    from rag.eval.datasets import load_squad

    if articles <= 0 or not SQUAD.exists():
        return {}
    dataset = load_squad(SQUAD)
    pages = found = 0
    with tempfile.TemporaryDirectory() as folder:
        for name in list(dataset.files)[:articles]:
            path = Path(folder) / "article.pdf"
            pages += typeset(path, Path(name).stem, dataset.files[name].split("\n\n"))
            found += sum(1 for p in pdf.read(path.read_bytes()).text.split("\n\n") if p.startswith("| "))
    print(
        f"{articles} typeset two-column articles ({pages} pages): {found} prose lines taken for table rows (target 0)"
    )
    return {"articles": articles, "pages": pages, "rows": found}


if __name__ == "__main__":
    raise SystemExit(main())

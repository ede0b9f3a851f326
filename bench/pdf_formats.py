"""PDFs against plain text: the same SQuAD articles as .txt and as typeset two-column PDFs.

    flock /tmp/rag-heavy.lock .venv/bin/python bench/pdf_formats.py            # 8 articles, 400 questions
    flock /tmp/rag-heavy.lock .venv/bin/python bench/pdf_formats.py --quick    # 2 articles, 60 questions

a. Quality: the first `--articles` SQuAD v1.1 dev articles written once as .txt (as `rag eval` writes
   them) and once typeset by bench/typeset.py (two justified columns, words placed one by one with no
   space characters, end-of-line hyphens, a running header and page numbers). Both are built with
   the real model and asked the same sampled questions: answer in the first quote, and the cited
   article right (target: PDF within 0.02 of text).
b. Extraction throughput on those PDFs, pages/s: rag's PDF reader (pypdfium2 plus its layout:
   columns, hyphens, headers), bare pypdfium2 text, pypdf and pdfminer.six; and how many of the
   source paragraphs each gives back verbatim (whitespace-normalised).
c. The share of the PDF build's wall time spent converting (target under 10 %), on those PDFs and on
   a larger PDF corpus of the first `--share-articles` (24) articles, where starting the two reader
   processes (~0.2 s) weighs less.

Per-question first quotes of both runs are written to bench/out/pdf_formats/records-{txt,pdf}.json.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import time
from pathlib import Path

from harness import OUT, SQUAD, Timer, finish, machine, print_machine
from typeset import typeset

from rag.config import DEFAULT_MODEL, Settings
from rag.embed.embedder import load_embedder
from rag.eval import metrics


def corpora(articles: int, folder: Path):
    """The chosen articles as .txt and .pdf corpora under `folder`, and their questions."""
    from rag.eval.datasets import load_squad

    dataset = load_squad(SQUAD)
    names = list(dataset.files)[:articles]
    text_dir, pdf_dir = folder / "txt" / "corpus", folder / "pdf" / "corpus"
    for path in (text_dir, pdf_dir):
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    pages = 0
    for name in names:
        (text_dir / name).write_text(dataset.files[name], encoding="utf-8")
        pages += typeset(pdf_dir / (Path(name).stem + ".pdf"), Path(name).stem, dataset.files[name].split("\n\n"))
    questions = [q for q in dataset.questions if q.source in names]
    return dataset, names, text_dir, pdf_dir, questions, pages


def build_fresh(corpus: Path) -> tuple[Settings, object]:
    from rag.build.indexer import build

    settings = Settings(corpus=corpus, index=corpus.parent / "index", model=DEFAULT_MODEL)
    shutil.rmtree(settings.index, ignore_errors=True)
    return settings, build(settings, full=True)


def quality(settings: Settings, questions) -> dict:
    """Answer in the first quote and right article, over `questions`."""
    from rag.answer.quotes import answer
    from rag.search import Retriever

    retriever = Retriever(settings)
    first_hits = article_hits = 0
    records = []
    for question in questions:
        result = answer(question.text, retriever, settings)
        first = result.citations[0] if result.citations else None
        hit = first is not None and metrics.contains_answer(first.quote, question.answers)
        first_hits += hit
        article_hits += first is not None and Path(first.source).stem == Path(question.source).stem
        records.append(
            {
                "id": question.id,
                "question": question.text,
                "hit": bool(hit),
                "first_quote": first.quote if first else None,
                "page": first.page if first else None,
            }
        )
    return {
        "answer_in_first_quote": round(first_hits / len(questions), 4),
        "cited_article_right": round(article_hits / len(questions), 4),
        "records": records,
    }


def _normal(text: str) -> str:
    return " ".join(text.split())


def extractors():
    """name → function(bytes) → (text, pages)."""

    def rag_reader(data):
        from rag.ingest.readers import pdf

        record = pdf.read(data)
        return record.text, len(record.page_starts)

    def bare_pdfium(data):
        import pypdfium2 as pdfium

        document = pdfium.PdfDocument(data)
        texts = [page.get_textpage().get_text_range() for page in document]
        return "\n".join(texts), len(texts)

    def pypdf_text(data):
        from pypdf import PdfReader

        reader = PdfReader(io.BytesIO(data))
        texts = [page.extract_text() for page in reader.pages]
        return "\n".join(texts), len(texts)

    def pdfminer_text(data):
        from pdfminer.high_level import extract_text
        from pdfminer.pdfpage import PDFPage

        pages = sum(1 for _ in PDFPage.get_pages(io.BytesIO(data)))
        return extract_text(io.BytesIO(data)), pages

    return {
        "rag (pypdfium2 + layout)": rag_reader,
        "pypdfium2 bare text": bare_pdfium,
        "pypdf": pypdf_text,
        "pdfminer.six": pdfminer_text,
    }


def throughput(pdf_dir: Path, dataset, names) -> dict:
    """Pages/s and verbatim paragraphs of each extractor over the same PDFs (each warmed once first)."""
    files = [(name, (pdf_dir / (Path(name).stem + ".pdf")).read_bytes()) for name in names]
    results = {}
    for label, extract in extractors().items():
        extract(files[0][1])  # imports and first-call costs out of the timing
        pages = found = total = 0
        with Timer() as timer:
            texts = [(name, *extract(data)) for name, data in files]
        for name, text, n in texts:
            pages += n
            flat = _normal(text)
            paragraphs = [_normal(p) for p in dataset.files[name].split("\n\n") if p.strip()]
            found += sum(p in flat for p in paragraphs)
            total += len(paragraphs)
        results[label] = {
            "pages": pages,
            "seconds": round(timer.seconds, 3),
            "pages_per_s": round(pages / timer.seconds, 1),
            "paragraphs_verbatim": round(found / total, 4),
        }
        print(
            f"  {label:26s} {pages} pages in {timer.seconds:6.2f} s = {pages / timer.seconds:7.1f} pages/s; "
            f"source paragraphs found verbatim {found}/{total} ({found / total:.1%})"
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=8)
    parser.add_argument("--questions", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--share-articles",
        type=int,
        default=24,
        help="articles in the larger PDF corpus whose build measures the conversion share (c)",
    )
    parser.add_argument("--quick", action="store_true", help="2 articles, 60 questions, no larger corpus")
    args = parser.parse_args()
    if args.quick:
        args.articles, args.questions, args.share_articles = 2, 60, 0
    started = time.perf_counter()
    info = machine()
    print_machine(info)
    folder = OUT / "pdf_formats"
    dataset, names, text_dir, pdf_dir, questions, pages = corpora(args.articles, folder)
    sample = random.Random(args.seed).sample(questions, min(args.questions, len(questions)))
    print(
        f"{len(names)} SQuAD v1.1 dev articles ({', '.join(Path(n).stem for n in names)}): "
        f"{pages} typeset pages; {len(sample)} of their {len(questions)} questions (seed {args.seed})"
    )
    load_embedder(DEFAULT_MODEL)  # model loading stays out of both builds

    print("b. extraction throughput on the same PDFs")
    speed = throughput(pdf_dir, dataset, names)

    figures = {
        "machine": info,
        "articles": [Path(n).stem for n in names],
        "pages": pages,
        "questions": len(sample),
        "extraction": speed,
    }
    for kind, corpus in (("txt", text_dir), ("pdf", pdf_dir)):
        settings, summary = build_fresh(corpus)
        scores = quality(settings, sample)
        (folder / f"records-{kind}.json").write_text(json.dumps(scores.pop("records"), indent=1), encoding="utf-8")
        figures[kind] = {
            "build_seconds": round(summary.seconds, 2),
            "passages": summary.passages,
            "conversion_seconds": summary.conversion_seconds,
            **scores,
        }
        print(
            f"a. {kind}: build {summary.seconds:.1f} s ({summary.passages} passages, converting "
            f"{summary.conversion_seconds:.2f} s); answer in first quote {scores['answer_in_first_quote']:.3f}, "
            f"cited article right {scores['cited_article_right']:.3f}"
        )
    gap = figures["txt"]["answer_in_first_quote"] - figures["pdf"]["answer_in_first_quote"]
    figures["first_quote_gap"] = round(gap, 4)
    print(
        f"answer in first quote, text − PDF: {gap:+.3f} (target within 0.02): {'met' if abs(gap) <= 0.02 else 'NOT met'}"
    )
    small = figures["pdf"]["conversion_seconds"] / figures["pdf"]["build_seconds"]
    print(f"c. converting took {small:.1%} of the {pages}-page PDF build (two reader processes starting up included)")
    figures["conversion_share_small"] = round(small, 4)
    if args.share_articles > len(names):
        _, more, _, more_pdf, _, more_pages = corpora(args.share_articles, folder / "share")
        _, summary = build_fresh(more_pdf)
        share = summary.conversion_seconds / summary.seconds
        figures["share_corpus"] = {
            "articles": len(more),
            "pages": more_pages,
            "passages": summary.passages,
            "build_seconds": round(summary.seconds, 2),
            "conversion_seconds": summary.conversion_seconds,
        }
        print(
            f"c. {len(more)} articles, {more_pages} pages, {summary.passages} passages: build {summary.seconds:.1f} s, "
            f"converting {summary.conversion_seconds:.2f} s"
        )
    else:
        share = small
    figures["conversion_share"] = round(share, 4)
    print(
        f"c. converting took {share:.1%} of the PDF build (target under 10 %): {'met' if share < 0.10 else 'NOT met'}"
    )
    import os

    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return finish("pdf_formats", figures, started)


if __name__ == "__main__":
    raise SystemExit(main())

"""OCR engines on scanned copies of typeset articles: character error rate, pages per second, and answers.

    flock /tmp/rag-heavy.lock .venv/bin/python bench/ocr_quality.py            # 5 articles, both engines
    flock /tmp/rag-heavy.lock .venv/bin/python bench/ocr_quality.py --quick    # 1 article, 4 pages

The articles are SQuAD v1.1 dev articles that v2.0 dev does not hold (the answer models never saw them), typeset
by bench/typeset.py (two justified columns of 9.5 pt serif, hyphens, running headers, page numbers). Each page's
true text is what rag's PDF reader takes from the typeset text layer. Every page is then scanned four ways:
300 dpi and 200 dpi clean, and 300 dpi and 200 dpi skewed 1–2°, with grain and JPEG artefacts (quality 60).

a. Character error rate (edit distance to the true text over its length, whitespace-normalised) and pages per
   second, per engine and per kind of scan, each page read through rag's image reader (`RAG_OCR`): the engine,
   then the same layout as a typeset PDF (columns, hyphens, headers). Target: at most 2 % on clean 300 dpi pages.
b. Answers: the articles as image-only PDFs of the degraded 300 dpi scans (grey JPEG pages), built with the real
   model and the default engine (`auto`), asked the same questions as the typeset PDFs: answer inside the first quote. Target: within
   2 questions of the text layer.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
from harness import OUT, SQUAD, finish, machine, print_machine
from typeset import typeset

from rag.config import DEFAULT_MODEL, Settings
from rag.ingest import readers
from rag.ingest.readers import ocr

SCANS = ("300 dpi clean", "200 dpi clean", "300 dpi skewed, grain, JPEG", "200 dpi skewed, grain, JPEG")


def fresh_articles(count: int) -> tuple[dict[str, str], object]:
    """Name → text of the first `count` SQuAD v1.1 dev articles whose title v2.0 dev does not hold; the dataset."""
    from rag.eval.datasets import load_squad

    v2 = {article["title"] for article in json.loads((SQUAD.parent / "dev-v2.0.json").read_text())["data"]}
    titles = [a["title"] for a in json.loads(SQUAD.read_text())["data"] if a["title"] not in v2]
    dataset = load_squad(SQUAD)
    chosen = [name for name in dataset.files if Path(name).stem in titles][:count]
    return {name: dataset.files[name] for name in chosen}, dataset


def scan(page_image, dpi: int, degraded: bool, seed: int):
    """A picture of one page at `dpi` as a scanner might give it: straight and clean, or skewed, grainy and
    JPEG-compressed."""
    from PIL import Image

    image = page_image
    if not degraded:
        return image, "PNG"
    rng = random.Random(seed)
    angle = rng.choice((-1, 1)) * rng.uniform(1.0, 2.0)
    image = image.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 18.0, pixels.shape[:2])[..., None]
    image = Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
    return image, "JPEG"


def encoded(image, form: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=form, **({"quality": 60} if form == "JPEG" else {}))
    return out.getvalue()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one row at a time: insertions along a row are a running minimum (numpy)."""
    if not a or not b:
        return max(len(a), len(b))
    x = np.frombuffer(a.encode("utf-32-le"), dtype=np.uint32)
    y = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    steps = np.arange(len(y) + 1)
    row = steps.copy()
    for i, ch in enumerate(x, 1):
        best = np.empty_like(row)
        best[0] = i
        best[1:] = np.minimum(row[1:] + 1, row[:-1] + (y != ch))  # deletion, substitution
        row = np.minimum.accumulate(best - steps) + steps  # insertion: best[j-1] + 1
    return int(row[-1])


def normal(text: str) -> str:
    return " ".join(text.split())


def pages_of(record) -> list[str]:
    starts = list(record.page_starts) + [len(record.text)]
    return [normal(record.text[a:b]) for a, b in zip(starts, starts[1:])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--articles", type=int, default=5)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--engines", default="rapidocr,tesseract")
    parser.add_argument("--quick", action="store_true", help="1 article, its first page, no answers")
    parser.add_argument("--answers-only", action="store_true", help="b alone, with the default engine")
    parser.add_argument(
        "--scans",
        default=",".join(SCANS),
        help="the kinds of scan a measures, their names as printed, joined by commas",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    info = machine()
    print_machine(info)
    import pypdfium2 as pdfium

    folder = OUT / "ocr_quality"
    shutil.rmtree(folder, ignore_errors=True)
    typeset_dir, scanned_dir = folder / "typeset" / "corpus", folder / "scanned" / "corpus"
    typeset_dir.mkdir(parents=True)
    scanned_dir.mkdir(parents=True)
    articles, dataset = fresh_articles(1 if args.quick else args.articles)
    truths, scans = [], {kind: [] for kind in SCANS}
    for n, (name, text) in enumerate(articles.items()):
        path = typeset_dir / (Path(name).stem + ".pdf")
        typeset(path, Path(name).stem, text.split("\n\n"))
        record = readers.read("pdf", path.read_bytes())
        truths += pages_of(record)
        document = pdfium.PdfDocument(path.read_bytes())
        degraded_pages = []
        for number, page in enumerate(document):
            if args.quick and number:
                break
            for kind in SCANS:
                dpi, degraded = int(kind[:3]), "skewed" in kind
                image, form = scan(
                    page.render(scale=dpi / 72).to_pil().convert("RGB"), dpi, degraded, seed=n * 100 + number
                )
                scans[kind].append(encoded(image, form))
                if dpi == 300 and degraded:
                    degraded_pages.append(image)
        document.close()
        gray = [page.convert("L") for page in degraded_pages]  # as an office scanner writes: grey JPEG pages
        gray[0].save(scanned_dir / path.name, "PDF", save_all=True, append_images=gray[1:], resolution=300, quality=60)
    truths = truths[: len(scans[SCANS[0]])]
    print(
        f"{len(articles)} articles ({', '.join(Path(n).stem for n in articles)}): {len(truths)} pages × {len(SCANS)} scans"
    )
    figures = {"machine": info, "articles": [Path(n).stem for n in articles], "pages": len(truths), "engines": {}}
    for engine in [] if args.answers_only else args.engines.split(","):
        options = ocr.Options(engine)
        reason = ocr.problem(options)
        if reason:
            print(f"a. {engine}: not measured ({reason})")
            continue
        readers.read("image", scans[SCANS[0]][0], ocr=options)  # the engine loads once, outside the timing
        rows = {}
        for kind in [k for k in SCANS if k in args.scans]:  # names hold commas: each is looked for whole
            errors = characters = 0
            clock = time.perf_counter()
            for data, truth in zip(scans[kind], truths):
                got = pages_of(readers.read("image", data, ocr=options))
                errors += edit_distance(" ".join(got), truth)
                characters += len(truth)
            seconds = time.perf_counter() - clock
            rows[kind] = {"cer": round(errors / characters, 4), "pages_per_second": round(len(truths) / seconds, 3)}
            print(
                f"a. {engine:9} {kind:28} CER {errors / characters:6.2%}   {len(truths) / seconds:5.2f} pages/s "
                f"({seconds / len(truths):.1f} s a page)"
            )
        figures["engines"][engine] = rows
        if SCANS[0] in rows:
            clean = rows[SCANS[0]]["cer"]
            met = "met" if clean <= 0.02 else "NOT met"
            print(f"   {engine}: CER on clean 300 dpi pages {clean:.2%} (target ≤ 2 %): {met}")
    if not args.quick and (args.answers_only or args.scans == ",".join(SCANS)):
        figures["answers"] = answers(typeset_dir, scanned_dir, dataset, articles, args.questions)
    return finish("ocr_quality", figures, started)


def answers(typeset_dir: Path, scanned_dir: Path, dataset, articles, count: int) -> dict:
    """Answer inside the first quote, typeset text layer against the degraded 300 dpi scans."""
    from rag.answer.quotes import answer
    from rag.build.indexer import build
    from rag.eval import metrics
    from rag.search import Retriever

    questions = [q for q in dataset.questions if q.source in articles]
    sample = random.Random(0).sample(questions, min(count, len(questions)))
    found = {}
    for kind, corpus in (("typeset", typeset_dir), ("scanned", scanned_dir)):
        settings = Settings(corpus=corpus, index=corpus.parent / "index", model=DEFAULT_MODEL, max_file_bytes=200 << 20)
        summary = build(settings, full=True)
        retriever = Retriever(settings)
        hits = 0
        for question in sample:
            result = answer(question.text, retriever, settings)
            first = result.citations[0] if result.citations else None
            hits += bool(first is not None and metrics.contains_answer(first.quote, question.answers))
        found[kind] = {"hits": hits, "build_seconds": round(summary.seconds, 1), "skipped": summary.skipped}
        engine = f", OCR by {ocr.Options().chosen}" if kind == "scanned" else ""
        print(
            f"b. {kind:8}: answer inside the first quote {hits} of {len(sample)} (build {summary.seconds:.0f} s{engine})"
        )
    gap = found["typeset"]["hits"] - found["scanned"]["hits"]
    print(f"   text layer − scans: {gap:+d} questions (target within 2): {'met' if abs(gap) <= 2 else 'NOT met'}")
    return {"questions": len(sample), **found, "gap": gap}


if __name__ == "__main__":
    raise SystemExit(main())

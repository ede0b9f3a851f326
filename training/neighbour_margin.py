"""Choose `rag.answer.quotes.NEIGHBOUR_MARGIN` (issue 13): when should the first quote move to the neighbouring
sentence where the reader finds the answer?

Validation only: the answerable questions of the 4 validation articles of SQuAD v2.0's train half (train-half
article k is validation when k // 2 % 5 == 2, as in training/fit_reader.py), asked through rag's pipeline of
the v2.0 corpus, with the *validation-run* reader (`--reader`, a `fit_reader.py --save` file fitted on the
other 14 articles only), so that its scores on these questions are honest. For each question the first
quote and its context (one neighbour each side) are read once; then for each margin d the quote moves to
the context's best-scoring sentence when that one beats the quote's best span by more than d. Prints, per
margin: answer in the first quote's sentence, in its mark (the moved quote's mark from the context
reading, the quote alone otherwise, as rag marks), how many quotes moved, gained and lost the answer.

    flock /tmp/rag-heavy.lock .venv/bin/python training/neighbour_margin.py --index /tmp/rag-eval-answers

(4 minutes; the reader checkpoint is written by `fit_reader.py --frozen 0 --epochs 3 --all-answers --save
training/out/reader_f0.pt --pipeline 0`)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # harness

from fit_reader import article_numbers, checkpoint_network  # noqa: E402
from harness import finish, machine, print_machine  # noqa: E402

import rag.answer.quotes as pipeline  # noqa: E402
from rag.answer.marker import Reader  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.eval import metrics  # noqa: E402
from rag.eval.evaluate import load_dataset, prepare  # noqa: E402
from rag.search import Retriever  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MARGINS = (-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, float("inf"))


def checkpoint_reader(path: Path) -> Reader:
    return Reader(checkpoint_network(path)[0], bfloat16=True)


def first_quotes(args, reader: Reader) -> list[dict | None]:
    """Per validation question: each sentence of the first quote's context, its best span's score, and
    whether the sentence and that span hold a gold answer; None where rag abstains."""
    dataset = load_dataset(args.eval / "squad" / "dev-v2.0.json")
    number = article_numbers(dataset)
    questions = [
        q
        for q in dataset.questions
        if number[q.source] % 2 == 0 and (number[q.source] // 2) % 5 == 2 and not q.impossible
    ]
    settings, _ = prepare(dataset, Settings(index=args.index))
    retriever = Retriever(settings)
    captured = {}
    marking = pipeline.mark_answers

    def spy(candidates, question, _reader=None):  # what rag would mark: keep the first quote, mark as rag does
        captured["first"], captured["question"] = candidates[0] if candidates else None, question
        return marking(candidates, question, None)

    pipeline.mark_answers = spy
    found, started = [], time.perf_counter()
    for n, q in enumerate(questions):
        captured.clear()
        if pipeline.answer(q.text, retriever, settings).abstained or captured.get("first") is None:
            found.append(None)
            continue
        first, question = captured["first"], captured["question"]
        at, text, spans, i = pipeline._context_sentences(first)
        marks = reader.mark_regions(question, [(text, [(a - at, b - at) for a, b in spans])])[0]
        [alone] = reader.mark(question, [first.text])
        sentences = []
        for k, ((a, b), mark) in enumerate(zip(spans, marks)):
            sentences.append(
                {
                    "quote": k == i,
                    "score": -1e9 if mark is None else mark.score,
                    "chars": b - a,
                    "has": metrics.contains_answer(text[a - at : b - at], q.answers),
                    "mark_has": mark is not None and metrics.contains_answer(text[mark.start : mark.end], q.answers),
                }
            )
        found.append(
            {
                "sentences": sentences,
                "alone_mark_has": alone is not None
                and metrics.contains_answer(first.text[alone.start : alone.end], q.answers),
            }
        )
        if (n + 1) % 100 == 0:
            print(f"  {n + 1}/{len(questions)} questions, {time.perf_counter() - started:.0f} s", flush=True)
    pipeline.mark_answers = marking
    return found


def sweep(found: list[dict | None]) -> list[dict]:
    n = len(found)
    rows = []
    for margin in MARGINS:
        first = marked = moved = gained = lost = 0
        for f in found:
            if f is None:
                continue
            quote = next(s for s in f["sentences"] if s["quote"])
            best = max(f["sentences"], key=lambda s: s["score"])
            pick = best if not best["quote"] and best["score"] > quote["score"] + margin else quote
            first += pick["has"]
            marked += pick["mark_has"] if pick is not quote else f["alone_mark_has"]
            if pick is not quote:
                moved += 1
                gained += pick["has"] and not quote["has"]
                lost += quote["has"] and not pick["has"]
        rows.append(
            {
                "margin": margin,
                "answer_in_first_sentence": round(first / n, 4),
                "answer_in_mark": round(marked / n, 4),
                "moved": moved,
                "gained": gained,
                "lost": lost,
            }
        )
        print(
            f"margin {margin:>4}: first sentence {first / n:.3f}, mark {marked / n:.3f}, moved {moved}, gained {gained}, lost {lost}"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", type=Path, default=Path("/work/shared/eval"), help="folder with squad/")
    parser.add_argument(
        "--index", type=Path, default=Path("/tmp/rag-eval-answers"), help="where eval indexes are cached"
    )
    parser.add_argument(
        "--reader",
        type=Path,
        default=ROOT / "training" / "out" / "reader_f0.pt",
        help="a fit_reader.py --save checkpoint fitted without the validation articles",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    info = machine()
    print_machine(info)
    found = first_quotes(args, checkpoint_reader(args.reader))
    print(f"{len(found)} answerable validation questions, {found.count(None)} declined")
    rows = sweep(found)
    return finish(
        "neighbour_margin",
        {"machine": info, "questions": len(found), "declined": found.count(None), "margins": rows},
        started,
    )


if __name__ == "__main__":
    sys.exit(main())

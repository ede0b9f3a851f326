"""What a question's FAISS search did to the rest of its thread before 2026-12-03, side by side with now.

    .venv/bin/python bench/question_threads.py --quick     # 100 abstracts, 10 questions
    .venv/bin/python bench/question_threads.py             # 300 abstracts, 2 rounds of builds, 60 questions

FAISS and torch share one OpenMP runtime. Until 2026-12-03 `Segment.search` set its thread's OpenMP count to
SEARCH_THREADS (1) and left it there, so after the first question every later torch call of that thread ran on
one core: the embedding and reading of later questions, and a build in the same thread (`rag eval`, a notebook
that asks and then rebuilds). Now the search gives the count back. This script runs both in one process, on
the same index, alternating: "left at 1" sets the count to 1 exactly as the old search left it, "given back"
is rag as it is. It prints the build seconds of a full `rag build` in each state and the p50/p95 of whole
questions (`rag.answer.quotes.answer`: embed, search, fuse, score sentences, read, verify) in each state.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time

from harness import OUT, SCIFACT, Timer, finish, machine, percentile, print_machine, read_jsonl, write_scifact_corpus

WORK = OUT / "question_threads"


def put(state: str, default: int) -> None:
    """Set the calling thread's OpenMP count where the old search left it ("left at 1"), or to `default`."""
    import faiss

    faiss.omp_set_num_threads(1 if state == "left at 1" else default)


STATES = ("left at 1", "given back")


def time_builds(settings, rounds: int, default: int) -> dict[str, list[float]]:
    """Seconds of a full build in each state, the order rotating round by round."""
    from rag.build.indexer import build

    builds: dict[str, list[float]] = {state: [] for state in STATES}
    for n in range(rounds):
        for state in STATES[n % 2:] + STATES[:n % 2]:
            shutil.rmtree(settings.index, ignore_errors=True)
            put(state, default)
            with Timer() as timer:
                summary = build(settings, full=True)
            builds[state].append(timer.seconds)
            print(f"round {n + 1}: build with the count {state}: {timer.seconds:.1f} s, {summary.passages} passages")
    put("given back", default)
    return builds


def time_questions(settings, count: int, default: int) -> dict[str, list[float]]:
    """Seconds of each of `count` SciFact test claims asked in each state, the order alternating claim by claim."""
    from rag.answer.quotes import answer
    from rag.search import Retriever

    claims = [q["text"] for q in read_jsonl(SCIFACT / "queries.jsonl")][: count + 3]
    retriever = Retriever(settings)
    for claim in claims[:3]:
        answer(claim, retriever, settings)  # first forward passes
    seconds: dict[str, list[float]] = {state: [] for state in STATES}
    for i, claim in enumerate(claims[3:]):
        for state in STATES[i % 2:] + STATES[:i % 2]:
            put(state, default)
            with Timer() as timer:
                answer(claim, retriever, settings)
            seconds[state].append(timer.seconds)
    put("given back", default)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=300, help="SciFact abstracts in the corpus (default 300)")
    parser.add_argument("--rounds", type=int, default=2, help="build rounds, each state once per round (default 2)")
    parser.add_argument("--questions", type=int, default=60, help="SciFact test claims asked in each state (default 60)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 abstracts, 1 round, 10 questions")
    args = parser.parse_args(argv)
    if args.quick:
        args.docs, args.rounds, args.questions = 100, 1, 10
    started = time.perf_counter()
    info = machine()
    print_machine(info)

    import torch

    from rag.config import Settings
    from rag.embed.embedder import choose_arithmetic, load_embedder

    default = torch.get_num_threads()
    corpus = WORK / "corpus"
    write_scifact_corpus(corpus, args.docs)
    settings = Settings(corpus=corpus, index=WORK / "index")
    arithmetic = choose_arithmetic(settings.precision)
    print(f"torch threads by default {default}; arithmetic {arithmetic.describe()}; {args.docs} abstracts")
    load_embedder(settings.model, arithmetic.precision)  # loaded once, timed apart
    builds = time_builds(settings, args.rounds, default)
    seconds = time_questions(settings, args.questions, default)
    figures = {"machine": info, "docs": args.docs, "default_threads": default, "builds_s": builds}
    base = statistics.mean(builds["given back"])
    for state in STATES:
        mean = statistics.mean(builds[state])
        p50, p95 = percentile(seconds[state], 50) * 1000, percentile(seconds[state], 95) * 1000
        figures[state] = {"build_s": round(mean, 2), "question_p50_ms": round(p50, 1), "question_p95_ms": round(p95, 1)}
        print(f"count {state:<10}: build {mean:6.1f} s ({mean / base:.2f}x now's time) · "
              f"questions p50 {p50:6.1f} ms, p95 {p95:6.1f} ms ({len(seconds[state])} asked)")
    return finish("question_threads", figures, started)


if __name__ == "__main__":
    sys.exit(main())

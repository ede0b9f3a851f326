"""Exact search in float32 (`flat`, segments before 2026-12-02 21:40) against a half-precision scan whose rows
get their float32 cosines back (`flat-fp16`, rag.index.segment.make_faiss since), side by side in one process on one
thread: milliseconds per question, and whether the two give the same top 10 with the same cosines.

    .venv/bin/python bench/exact_scan.py                    # 10k, 100k, 200k passages (rag's exact range)
    .venv/bin/python bench/exact_scan.py --quick            # 10k, 50k

Vectors: the real passage vectors query_speed.py cached (run it first), then noisy copies of them (cosine ~0.9
to the originals, as query_speed's larger indexes); questions: other noisy copies, unit length. Each size is a
real segment written by rag.index.segment.write_segment and searched through Segment.search; the float32 arm is the
same segment written with IndexFlatIP. Questions alternate between the arms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import OUT, finish, machine, noisy_copies, print_machine


def segment_of(folder: Path, vectors, float32: bool):
    import faiss

    from rag.index import segment as segments
    from rag.types import Passage

    passages = [Passage(f"f.txt#{i}", "f.txt", 10 * i, 10 * i + 9, 1, 1, "p") for i in range(len(vectors))]
    made = segments.make_faiss
    if float32:
        def flat(v, approximate_above=segments.APPROXIMATE_ABOVE):
            index = faiss.IndexFlatIP(v.shape[1])
            index.add(v)
            return index

        segments.make_faiss = flat
    try:
        info = segments.write_segment(folder, passages, vectors)
    finally:
        segments.make_faiss = made
    segment = segments.Segment(folder / info.name)
    segment.open_search()
    return segment


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,200000")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="10k and 50k passages, 50 questions")
    args = parser.parse_args(argv)
    sizes = [10_000, 50_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    questions = 50 if args.quick else args.questions
    started = time.perf_counter()
    info = machine()
    print_machine(info)
    import numpy as np

    cached = sorted((OUT / "query_speed").glob("base-vectors-*.npy"), key=lambda p: p.stat().st_mtime)
    if not cached:
        print("no cached base vectors: run bench/query_speed.py first (it embeds 398 real passages)")
        return 1
    base = np.load(cached[-1])
    figures = {"machine": info, "base": cached[-1].name, "questions": questions, "sizes": {}}
    print(f"{len(base)} real vectors from {cached[-1].name}; {questions} questions per size, one thread, arms alternating")
    for size in sizes:
        vectors = noisy_copies(base, size, 0.025)
        queries = noisy_copies(base, len(base) + questions, 0.025, seed=size)[len(base):]
        with tempfile.TemporaryDirectory(dir=OUT) as scratch:
            arms = {"float32": segment_of(Path(scratch), vectors, True), "fp16": segment_of(Path(scratch), vectors, False)}
            times = {name: [] for name in arms}
            same_rows = same_scores = 0
            for n, query in enumerate(queries):
                found = {}
                for name in (list(arms) if n % 2 == 0 else list(arms)[::-1]):
                    t = time.perf_counter()
                    found[name] = arms[name].search(query, 31, None)
                    times[name].append(time.perf_counter() - t)
                rows = {name: [r for r, _ in pairs[:10]] for name, pairs in found.items()}
                same_rows += rows["float32"] == rows["fp16"]
                same_scores += np.allclose([s for _, s in found["float32"][:10]], [s for _, s in found["fp16"][:10]], atol=1e-6)
        ms = {name: statistics.median(t) * 1000 for name, t in times.items()}
        row = {"float32_ms": round(ms["float32"], 2), "fp16_ms": round(ms["fp16"], 2), "speedup": round(ms["float32"] / ms["fp16"], 3),
               "same_top10": round(same_rows / questions, 3), "same_cosines": round(same_scores / questions, 3)}
        figures["sizes"][size] = row
        print(f"{size:>9,} passages: float32 {row['float32_ms']:.2f} ms, fp16 scan {row['fp16_ms']:.2f} ms ({row['speedup']:.2f}x); "
              f"same top 10 for {row['same_top10']:.1%} of questions, same cosines for {row['same_cosines']:.1%}")
    return finish("exact_scan", figures, started)


if __name__ == "__main__":
    sys.exit(main())

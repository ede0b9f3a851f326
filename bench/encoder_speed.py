"""rag's own encoder (rag.embed.bert) against sentence-transformers running the same bundled model, side by side in
one process, on the small products a question makes: embedding the question and embedding its candidate
sentences, in the arithmetic `auto` picks on this CPU and in float32; and the cold cost of each: importing and
loading the model in a fresh process. Cold `rag ask` end to end is `ask_speed.py`.

    .venv/bin/python bench/encoder_speed.py            # 40 rounds, 3 cold loads each
    .venv/bin/python bench/encoder_speed.py --quick    # 10 rounds, 1 cold load each

Each round times every step once with each arm, the arm order alternating from round to round; the figures are
the median milliseconds per step on one torch thread (as `rag serve` answers) and their ratio, and the largest
difference between the two arms' vectors (0.0: bit for bit).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from harness import ROOT, finish, machine, print_machine

QUESTIONS = ["Which outlet did Baklanov give the interview to?", "When did the Russian military operation in Syria start?",
             "In how many countries will the terrorists now solve their problems?", "What is the tallest mountain in Africa?"]
COLD = """
import sys, time
t = time.perf_counter()
from rag.embed.embedder import SentenceTransformerEmbedder
SentenceTransformerEmbedder("all-MiniLM-L6-v2", "float32", library=sys.argv[1] == "library").encode(["warm"])
print(time.perf_counter() - t)
"""


def cold_seconds(arm: str, loads: int) -> list[float]:
    """Seconds to import rag's embedder and load the model in a fresh process (`arm`: "encoder" or "library")."""
    runs = [subprocess.run([sys.executable, "-c", COLD, arm], cwd=ROOT, check=True, capture_output=True, text=True)
            for _ in range(loads)]
    return [float(run.stdout.strip().splitlines()[-1]) for run in runs]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--loads", type=int, default=3, help="cold loads of each arm, alternating")
    parser.add_argument("--quick", action="store_true", help="10 rounds, 1 cold load each")
    args = parser.parse_args(argv)
    rounds, loads = (10, 1) if args.quick else (args.rounds, args.loads)
    started = time.perf_counter()
    info = machine()
    print_machine(info)
    import numpy as np
    import torch

    from rag.ingest.chunking import split_sentences
    from rag.config import DEFAULT_MODEL
    from rag.embed.embedder import SentenceTransformerEmbedder, choose_arithmetic

    cold = {"encoder": [], "library": []}
    for _ in range(loads):
        for arm in cold:
            cold[arm] += cold_seconds(arm, 1)
    torch.set_num_threads(1)
    text = (ROOT / "seeds" / "000_46ad57352320fbef.txt").read_text(encoding="utf-8")
    sentences = [text[a:b] for a, b in split_sentences(text)][:40]
    steps = {"embed a question": lambda e, q: e.encode([q]),
             f"embed {len(sentences)} candidate sentences": lambda e, q: e.encode(sentences, batch_size=64)}
    figures = {"machine": info, "rounds": rounds, "torch_threads": 1, "precisions": {},
               "cold_load_s": {arm: round(statistics.median(values), 3) for arm, values in cold.items()}}
    print(f"import and load in a fresh process (median of {loads}): rag.embed.bert {figures['cold_load_s']['encoder']:.2f} s, "
          f"sentence-transformers {figures['cold_load_s']['library']:.2f} s")
    for precision in dict.fromkeys([choose_arithmetic("auto").precision, "float32"]):
        arms = [("rag.embed.bert", SentenceTransformerEmbedder(DEFAULT_MODEL, precision)),
                ("sentence-transformers", SentenceTransformerEmbedder(DEFAULT_MODEL, precision, library=True))]
        differences = [float(np.abs(arms[0][1].encode(texts) - arms[1][1].encode(texts)).max())
                       for texts in ([QUESTIONS[0]], sentences)]
        times = {(step, name): [] for step in steps for name, _ in arms}
        for n in range(rounds + 2):
            question = QUESTIONS[n % len(QUESTIONS)]
            for step, run in steps.items():
                for name, embedder in (arms if n % 2 == 0 else arms[::-1]):
                    t = time.perf_counter()
                    run(embedder, question)
                    if n >= 2:  # the first two rounds warm up
                        times[step, name].append(time.perf_counter() - t)
        found = {"largest_vector_difference": max(differences)}
        print(f"{precision}: {rounds} rounds, one torch thread, arms alternating; median ms per step; "
              f"largest vector difference {max(differences):.1e}")
        for step in steps:
            mine, theirs = (statistics.median(times[step, name]) * 1000 for name, _ in arms)
            found[step] = {"encoder_ms": round(mine, 2), "library_ms": round(theirs, 2), "ratio": round(theirs / mine, 3)}
            print(f"  {step:<28} rag.embed.bert {mine:7.2f}   sentence-transformers {theirs:7.2f}   {theirs / mine:.2f}x")
        figures["precisions"][precision] = found
    return finish("encoder_speed", figures, started)


if __name__ == "__main__":
    raise SystemExit(main())

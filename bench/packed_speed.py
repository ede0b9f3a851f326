"""bfloat16 linear layers packed once for oneDNN against cast to bfloat16 (rag before 2026-12-02 21:00), side by
side in one process, on the small products a question makes: embedding the question, embedding a reranking's
candidate sentences, and the reader marking three quotes. Needs a CPU with native bfloat16 (AMX or AVX512-BF16).

    .venv/bin/python bench/packed_speed.py            # 60 rounds
    .venv/bin/python bench/packed_speed.py --quick    # 10 rounds

Each round times every step once with each arm, the arm order alternating from round to round; the figures are
the median milliseconds per step on one torch thread (as `rag serve` answers), their ratio, and how far the
packed arm's question vectors are from the cast arm's (cosine). Build throughput with and without packing is
`int8_speed.py --kind native --variants "float32,bfloat16 unpacked workers,bfloat16 workers"`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from harness import ROOT, bfloat16_cast, finish, machine, print_machine

QUESTIONS = ["Which outlet did Baklanov give the interview to?", "When did the Russian military operation in Syria start?",
             "In how many countries will the terrorists now solve their problems?", "What is the tallest mountain in Africa?"]


def arms():
    """(name, embedder, reader) for packed and cast bfloat16 layers."""
    from rag.config import DEFAULT_MODEL
    from rag.embed.embedder import SentenceTransformerEmbedder
    from rag.answer.marker import MODEL_FILE, load_reader

    packed = ("packed", SentenceTransformerEmbedder(DEFAULT_MODEL, "bfloat16"), load_reader.__wrapped__(MODEL_FILE))
    with bfloat16_cast():
        cast = ("cast", SentenceTransformerEmbedder(DEFAULT_MODEL, "bfloat16"), load_reader.__wrapped__(MODEL_FILE))
    return [packed, cast]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="10 rounds")
    args = parser.parse_args(argv)
    rounds = 10 if args.quick else args.rounds
    started = time.perf_counter()
    info = machine()
    print_machine(info)
    import numpy as np
    import torch

    from rag.ingest.chunking import split_sentences
    from rag.embed.embedder import choose_arithmetic

    if choose_arithmetic("auto").precision != "bfloat16":
        print("no native bfloat16 on this CPU: rag casts its layers only where it runs bfloat16 natively; nothing to compare")
        return 0
    torch.set_num_threads(1)
    text = (ROOT / "seeds" / "000_46ad57352320fbef.txt").read_text(encoding="utf-8")
    sentences = [text[a:b] for a, b in split_sentences(text)][:60]
    quotes = sentences[2:5]
    loaded = arms()
    steps = {
        "embed a question": lambda e, r, q: e.encode([q]),
        f"embed {len(sentences)} candidate sentences": lambda e, r, q: e.encode(sentences, batch_size=64),
        "reader marks 3 quotes": lambda e, r, q: r.mark(q, quotes),
    }
    times = {(step, name): [] for step in steps for name, _, _ in loaded}
    for n in range(rounds + 2):
        order = loaded if n % 2 == 0 else loaded[::-1]
        question = QUESTIONS[n % len(QUESTIONS)]
        for step, run in steps.items():
            for name, embedder, reader in order:
                t = time.perf_counter()
                run(embedder, reader, question)
                if n >= 2:  # the first two rounds warm up
                    times[step, name].append(time.perf_counter() - t)
    figures = {"machine": info, "rounds": rounds, "torch_threads": 1, "steps": {}}
    print(f"{rounds} rounds, one torch thread, arms alternating; median ms per step")
    for step in steps:
        packed, cast = (statistics.median(times[step, name]) * 1000 for name in ("packed", "cast"))
        figures["steps"][step] = {"packed_ms": round(packed, 2), "cast_ms": round(cast, 2), "speedup": round(cast / packed, 3)}
        print(f"  {step:<34} packed {packed:7.2f} ms   cast {cast:7.2f} ms   packed is {cast / packed:.2f}x as fast")
    a, b = (embedder.encode(QUESTIONS + sentences) for _, embedder, _ in loaded)
    cosine = (np.asarray(a) * np.asarray(b)).sum(axis=1)
    figures["cosine_min"] = round(float(cosine.min()), 6)
    print(f"packed vectors against cast ones: cosine min {cosine.min():.6f} over {len(cosine)} texts")
    return finish("packed_speed", figures, started)


if __name__ == "__main__":
    sys.exit(main())

"""How passages are batched, side by side: sentence-transformers' order (by characters, rag until 2026-12-03)
against batches of one length (rag.embed.batching), in float32 and in the arithmetic `auto` picks, on this CPU as
it is and limited to AVX2 (emulated).

    .venv/bin/python bench/batching.py --quick      # 400 passages, AVX2 only
    .venv/bin/python bench/batching.py              # every passage of 1,000 SciFact abstracts, AVX2 and native

Passages: rag's own chunking of the SciFact subset bench/precision.py writes (1,989 passages for 1,000
abstracts). Each arm embeds all of them in one call, as `rag build` does, with rag's worker threads (one per
torch thread); the arms' order rotates from round to round. Batchings:
- characters: sorted by length in characters and cut into batches of 32, as sentence-transformers does;
- tokens: sorted by length in model tokens, cut into batches of 32 (the least padding, still masked);
- one length: rag.embed.batching.plan_batches, texts of one token length together, so most batches need no
  attention mask.
Printed: passages/s, each batching against characters in the same arithmetic, the padding (tokens fed / real
tokens), and each arm's cosine to float32 one-length vectors.

    .venv/bin/python bench/batching.py --candidates 100  # 100 questions' candidate sentences, AVX2 and native

`--candidates`: what sentence scoring embeds for each question, every sentence of six passages in a row (~35
sentences), as one padded batch (rag until 2026-12-03) and in rag.embed.batching's batches (`encode`, its workers),
alternating set by set, on one torch thread and on two; median milliseconds per set, padding, cosine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import Timer, finish, machine, print_machine, print_vector_flags

from int8_speed import passages
from precision import KINDS, kind_environment, write_subset

BATCH = 32
BATCHINGS = ("characters", "tokens", "one length")


def plans(texts: list[str], lengths: list[int]) -> dict[str, list[list[int]]]:
    """Each batching's batches of text indices, from the texts and the tokens the model is fed of each."""
    import numpy as np

    from rag.embed.batching import plan_batches

    by_characters = np.argsort([-len(text) for text in texts], kind="stable")
    by_tokens = np.argsort([-n for n in lengths], kind="stable")
    cut = lambda order: [order[start:start + BATCH].tolist() for start in range(0, len(order), BATCH)]  # noqa: E731
    return {"characters": cut(by_characters), "tokens": cut(by_tokens), "one length": plan_batches(lengths, BATCH)}


def child(args) -> int:
    """Under the kind's limits: every arm over every passage, rounds rotating; one JSON line."""
    import numpy as np
    import torch

    from rag.embed.batching import padding
    from rag.embed.embedder import choose_arithmetic, load_embedder

    chosen = choose_arithmetic("auto")
    arithmetics = list(dict.fromkeys(["float32", chosen.precision]))
    models = {name: load_embedder("all-MiniLM-L6-v2", name) for name in arithmetics}
    texts = passages(args.folder, models["float32"])[:args.passages or None]
    lengths = models["float32"].fed_tokens(texts)
    batchings = plans(texts, lengths)
    workers = torch.get_num_threads()
    arms = [(a, b) for a in arithmetics for b in BATCHINGS]
    for arithmetic in arithmetics:  # first passes (allocations, weight packing) are not timed
        models[arithmetic].encode(texts[:2 * BATCH], batch_size=BATCH)
    seconds = {arm: [] for arm in arms}
    vectors = {}
    for round_ in range(args.rounds):
        shift = round_ % len(arms)
        for arm in arms[shift:] + arms[:shift]:
            with Timer() as timer:
                vectors[arm] = models[arm[0]]._encode_shared(texts, batchings[arm[1]], workers, None)
            seconds[arm].append(timer.seconds)
            print(f"round {round_ + 1}: {arm[0]}, {arm[1]}: {timer.seconds:.1f} s, load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr, flush=True)
    reference = vectors[("float32", "one length")]
    result = {"kind": args.child, "auto": chosen.describe(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "workers": workers, "passages": len(texts), "real_tokens": sum(lengths), "rounds": args.rounds,
              "padding": {b: round(padding(lengths, batchings[b]), 3) for b in BATCHINGS},
              "batches": {b: len(batchings[b]) for b in BATCHINGS}, "arms": {}}
    for arm in arms:
        cosine = (vectors[arm] * reference).sum(axis=1)
        result["arms"][f"{arm[0]}, {arm[1]}"] = {
            "seconds": round(float(np.median(seconds[arm])), 2),
            "passages_per_s": round(len(texts) / float(np.median(seconds[arm])), 2),
            "cosine_mean": round(float(cosine.mean()), 5), "cosine_min": round(float(cosine.min()), 5)}
    print(json.dumps(result))
    return 0


def candidate_sets(texts: list[str], count: int, per: int = 6) -> list[list[str]]:
    """`count` sets of the sentences of `per` passages in a row, spread over the passages."""
    from rag.ingest.chunking import split_sentences

    step = max(1, (len(texts) - per) // max(1, count))
    starts = range(0, max(1, len(texts) - per + 1), step)
    return [[p[a:b] for p in texts[start:start + per] for a, b in split_sentences(p)] for start in list(starts)[:count]]


def child_candidates(args) -> int:
    """Under the kind's limits: each candidate set as one padded batch and in rag's batches; one JSON line."""
    import numpy as np
    import torch

    from rag.embed.batching import padding, plan_batches
    from rag.embed.embedder import choose_arithmetic, load_embedder

    chosen = choose_arithmetic("auto")
    result = {"kind": args.child, "auto": chosen.describe(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "arms": {}}
    threads = torch.get_num_threads()
    for arithmetic in dict.fromkeys(["float32", chosen.precision]):
        model = load_embedder("all-MiniLM-L6-v2", arithmetic)
        sets = candidate_sets(passages(args.folder, model), args.candidates)
        lengths = [model.fed_tokens(texts) for texts in sets]
        for texts in sets[:2]:  # first passes are not timed
            model.encode(texts, batch_size=64)
        for count in sorted({1, threads}):
            torch.set_num_threads(count)
            times = {"one batch": [], "rag.embed.batching": []}
            cosines = []
            for n, texts in enumerate(sets):
                arms = [("one batch", model._forward), ("rag.embed.batching", lambda t: model.encode(t, batch_size=64))]
                found = {}
                for name, run in (arms if n % 2 == 0 else arms[::-1]):
                    with Timer() as timer:
                        found[name] = run(texts)
                    times[name].append(timer.seconds * 1000)
                cosines.append(float((found["one batch"] * found["rag.embed.batching"]).sum(axis=1).min()))
            one, planned = (float(np.median(times[name])) for name in ("one batch", "rag.embed.batching"))
            result["arms"][f"{arithmetic}, {count} thread(s)"] = {
                "sets": len(sets), "sentences_mean": round(float(np.mean([len(t) for t in sets])), 1),
                "one_batch_ms": round(one, 1), "rag_batching_ms": round(planned, 1), "speedup": round(one / planned, 3),
                "padding_one_batch": round(float(np.mean([padding(n, [list(range(len(n)))]) for n in lengths])), 3),
                "padding_rag": round(float(np.mean([padding(n, plan_batches(n, 64)) for n in lengths])), 3),
                "cosine_min": round(min(cosines), 6)}
        torch.set_num_threads(threads)
    print(json.dumps(result))
    return 0


def report_candidates(run: dict) -> None:
    print(f"kind {run['kind']}: PyTorch CPU capability {run['cpu_capability']}; {run['auto']}")
    for name, row in run["arms"].items():
        print(f"  {name:<24} {row['sets']} sets of {row['sentences_mean']} sentences: one batch {row['one_batch_ms']:.1f} ms "
              f"(padding {row['padding_one_batch']:.2f}), rag.embed.batching {row['rag_batching_ms']:.1f} ms (padding "
              f"{row['padding_rag']:.2f}): {row['speedup']:.2f}x; min cosine {row['cosine_min']:.6f}")


def report(run: dict) -> None:
    print(f"kind {run['kind']}: PyTorch CPU capability {run['cpu_capability']}, {run['workers']} workers, "
          f"{run['passages']} passages ({run['real_tokens']} tokens), median of {run['rounds']} round(s); {run['auto']}")
    print("padding (tokens fed / real tokens): " +
          ", ".join(f"{b} {run['padding'][b]} in {run['batches'][b]} batches" for b in BATCHINGS))
    arms = run["arms"]
    print(f"{'arithmetic, batching':<26} {'seconds':>8} {'passages/s':>10} {'x characters':>12} {'x float32 chars':>15} "
          f"{'cosine mean':>11} {'min':>8}")
    for name, row in arms.items():
        arithmetic = name.split(",")[0]
        row["x_characters"] = round(arms[f"{arithmetic}, characters"]["seconds"] / row["seconds"], 3)
        row["x_float32_characters"] = round(arms["float32, characters"]["seconds"] / row["seconds"], 3)
        print(f"{name:<26} {row['seconds']:>8.1f} {row['passages_per_s']:>10.1f} {row['x_characters']:>11.2f}x "
              f"{row['x_float32_characters']:>14.2f}x {row['cosine_mean']:>11.5f} {row['cosine_min']:>8.5f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="avx2,native", help="kinds of CPU, comma-separated (default avx2,native)")
    parser.add_argument("--docs", type=int, default=1000, help="SciFact abstracts to cut passages from (default 1000)")
    parser.add_argument("--passages", type=int, default=0, help="embed only the first N passages (default: all)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds over every arm, order rotating (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 400 passages, AVX2 only")
    parser.add_argument("--candidates", type=int, default=0, metavar="N",
                        help="instead: N candidate sets of a question (every sentence of six passages), see above")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.kinds, args.passages = "avx2", 400
        args.candidates = min(args.candidates, 10)
    if args.child:
        return child_candidates(args) if args.candidates else child(args)
    info = machine()
    print_machine(info)
    flags = print_vector_flags()
    started, runs = time.perf_counter(), []
    folder = write_subset(args.docs)
    for kind in args.kinds.split(","):
        limits = ", ".join(f"{k}={v}" for k, v in KINDS[kind].items())
        print(f"\nkind: {kind} ({'EMULATED on this CPU: ' + limits if limits else 'this CPU as it is'})", flush=True)
        env = kind_environment(kind)
        command = [sys.executable, __file__, "--child", kind, "--folder", str(folder), "--passages",
                   str(args.passages), "--rounds", str(args.rounds), "--candidates", str(args.candidates)]
        done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(f"NOT MEASURED: exit {done.returncode}")
            return 1
        runs.append(json.loads(lines[-1]))
        (report_candidates if args.candidates else report)(runs[-1])
    return finish("batching", {"machine": info, "cpu_flags": flags, "runs": runs}, started)


if __name__ == "__main__":
    sys.exit(main())

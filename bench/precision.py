"""float32, bfloat16 and int8 side by side: `rag build` passages/s and SciFact test nDCG@10 through rag's own
pipeline, on this CPU as it is and with the CPU limited to AVX2 (emulated: no native bfloat16, no VNNI).

    .venv/bin/python bench/precision.py --quick      # 150 abstracts, native and AVX2
    .venv/bin/python bench/precision.py              # 1,000 abstracts
    .venv/bin/python bench/precision.py --kinds native --docs 5183   # the full SciFact corpus

Each kind of CPU runs in its own process, because the limits are environment variables read when torch
loads: ATEN_CPU_CAPABILITY (PyTorch's own kernels), MKL_ENABLE_INSTRUCTIONS (float32 matrix products),
ONEDNN_MAX_CPU_ISA (bfloat16 matrix products) and FBGEMM_ENABLE_INSTRUCTIONS (int8 ones). In each, a short
probe first embeds the same 96 passages in every precision (is bfloat16 native here? did float32 slow
down?), then `rag eval` builds an index of the corpus below in each precision (RAG_PRECISION) and asks the
SciFact test queries: build seconds and passages/s, nDCG@10 hybrid (rag's default) and dense only, and
the cosine of each precision's vectors to float32's.

Corpus: every SciFact abstract judged in the test qrels, then further abstracts in file order, up to
--docs (1,000 by default; the full corpus is 5,183); test queries with a judged abstract among them. On a
subset the absolute nDCG is higher than the published full-corpus figure: compare precisions only.
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

from harness import (
    OUT,
    SCIFACT,
    Timer,
    finish,
    json_line,
    machine,
    print_machine,
    print_vector_flags,
    read_jsonl,
    scifact_abstracts,
)

WORK = OUT / "precision"
KINDS = {
    "native": {},
    "avx2": {  # an AVX2 CPU without AVX-512, VNNI or bfloat16 (a 2-core AMD EPYC Zen 2/3, most laptops)
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
    },
    "avx512": {  # AVX-512 with VNNI but no bfloat16 (Cascade Lake, Ice Lake)
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI",
        "FBGEMM_ENABLE_INSTRUCTIONS": "AVX512_E1",
    },
}


def kind_environment(kind: str) -> dict[str, str]:
    """This process's environment with the limits of `kind` in place of any other kind's."""
    env = {k: v for k, v in os.environ.items() if all(k not in limits for limits in KINDS.values())}
    env.update(KINDS[kind])
    return env


PRECISIONS = ("float32", "bfloat16", "int8")
RECIPES = {  # --builds int8:NAME: an int8 build with rag.embed.int8.INT8 set to this recipe (bench/int8_speed.py)
    "ffn-float32": {"ffn_output": "float32"},
    "ffn-float32-per-tensor": {"ffn_output": "float32", "per_channel": False},
    "split": {"ffn_output": "split"},
    "split-per-tensor": {"ffn_output": "split", "per_channel": False},
    "ffn-int8": {"ffn_output": "int8"},
}
PROBE_PASSAGES = 96


def write_subset(docs: int) -> Path:
    """A BEIR folder of `docs` SciFact abstracts (every judged test abstract first) under bench/out."""
    folder = WORK / f"scifact-{docs}"
    judged: dict[str, dict[str, str]] = {}
    lines = (SCIFACT / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        query, doc, score = line.split("\t")
        judged.setdefault(query, {})[doc] = score
    relevant = {doc for qrels in judged.values() for doc in qrels}
    records = scifact_abstracts()
    chosen = ([r for r in records if r["_id"] in relevant] + [r for r in records if r["_id"] not in relevant])[:docs]
    present = {r["_id"] for r in chosen}
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for record in chosen:
            handle.write(json.dumps(record) + "\n")
    shutil.copy(SCIFACT / "queries.jsonl", folder / "queries.jsonl")
    kept = [lines[0]] + [line for line in lines[1:] if line.split("\t")[1] in present]
    (folder / "qrels" / "test.tsv").write_text("\n".join(kept) + "\n", encoding="utf-8")
    return folder


def child(args) -> int:
    """One kind of CPU: the probe, then one `rag eval` per precision; prints one JSON line."""
    import numpy as np
    import torch

    from rag.config import Settings
    from rag.embed.arithmetic import choose_arithmetic
    from rag.embed.embedder import load_embedder
    from rag.eval.evaluate import evaluate
    from rag.index import store

    texts = [f"{r['title']} {r['text']}" for r in read_jsonl(args.folder / "corpus.jsonl", PROBE_PASSAGES)]
    result = {
        "kind": args.child,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "auto": choose_arithmetic("auto").describe(),
        "probe": {},
        "builds": {},
    }
    for precision in args.probe:
        embedder = load_embedder("all-MiniLM-L6-v2", precision)
        embedder.encode(texts[:8])
        with Timer() as timer:
            embedder.encode(texts)
        result["probe"][precision] = round(len(texts) / timer.seconds, 1)
    vectors = {}
    for precision in args.build:
        use_recipe(precision)
        os.environ["RAG_PRECISION"] = precision.partition(":")[0]
        index = args.work / args.child / precision.replace(":", "-")
        shutil.rmtree(index, ignore_errors=True)
        settings = Settings(index=index, precision=os.environ["RAG_PRECISION"])  # Settings() alone is auto
        with Timer() as timer:
            report = evaluate(args.folder, settings)
        dense = evaluate(args.folder, settings.replace(hybrid=False))  # same index, no build work
        loaded = store.load(index / "eval" / args.folder.name / "index")
        vectors[precision] = np.asarray(loaded.vectors.all(), dtype=np.float32)
        result["builds"][precision] = {
            "arithmetic": loaded.manifest.arithmetic,
            "passages": report.index["passages_embedded"],
            "build_s": round(report.index["seconds"], 2),
            "eval_s": round(timer.seconds, 1),
            "ndcg@10": report.scores["ndcg@10"],
            "dense_ndcg@10": dense.scores["ndcg@10"],
            "queries": report.questions,
        }
    if not args.build:  # --speed-only: the passages of the float32 index an earlier run built
        loaded = store.load(args.work / args.child / "float32" / "eval" / args.folder.name / "index")
    use_recipe("int8")  # the interleaved timing runs the shipped recipe
    if args.blocks:
        result["interleaved"] = interleaved(loaded.passages, args.probe, args.blocks)
    if "float32" in vectors:
        for precision, found in vectors.items():
            cosine = (found * vectors["float32"]).sum(axis=1)
            result["builds"][precision]["cosine_to_float32"] = [
                round(float(cosine.mean()), 5),
                round(float(cosine.min()), 5),
            ]
    print(json.dumps(result))
    return 0


def use_recipe(label: str) -> None:
    """Make the next int8 model follow the recipe `int8:NAME` names (or the shipped one for plain `int8`)."""
    import rag.embed.embedder as embedding

    shipped = getattr(use_recipe, "shipped", None) or embedding.INT8
    use_recipe.shipped = shipped
    name = label.partition(":")[2]
    embedding.INT8 = embedding.Int8Recipe(**RECIPES[name]) if name else shipped
    embedding._load.cache_clear()


def interleaved(passages, precisions: list[str], blocks: int, size: int = 64) -> dict:
    """Passages/s of each precision over the same `blocks` blocks of the index's passages, the precisions'
    order rotating from block to block, so that other work on the machine slows all of them alike."""
    from rag.embed.embedder import load_embedder

    step = max(1, len(passages) // blocks)
    chosen = [[p.text for p in passages[start : start + size]] for start in range(0, len(passages), step)][:blocks]
    seconds = dict.fromkeys(precisions, 0.0)
    for n, texts in enumerate(chosen):
        for precision in precisions[n % len(precisions) :] + precisions[: n % len(precisions)]:
            with Timer() as timer:
                load_embedder("all-MiniLM-L6-v2", precision).encode(texts)
            seconds[precision] += timer.seconds
    count = sum(len(texts) for texts in chosen)
    return {"passages": count, **{p: round(count / s, 1) for p, s in seconds.items()}}


def run_kind(kind: str, folder: Path, probe: list[str], build: list[str], blocks: int, timeout: float) -> dict:
    """One child process under the kind's CPU limits."""
    env = kind_environment(kind)
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--folder",
        str(folder),
        "--work",
        str(WORK),
        "--probe",
        ",".join(probe),
        "--build",
        ",".join(build),
        "--blocks",
        str(blocks),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"kind": kind, "error": f"exit {done.returncode}: {done.stderr.strip()[-800:]}"}
    return json.loads(lines[-1])


def report(run: dict) -> None:
    """The kind's rows, each precision against float32 measured in the same process."""
    limits = ", ".join(f"{k}={v}" for k, v in KINDS[run["kind"]].items()) or "no limits"
    label = run["kind"] if run["kind"] == "native" else f"{run['kind']} (EMULATED on this CPU: {limits})"
    print(f"\n== {label}")
    if "error" in run:
        print(f"   NOT MEASURED: {run['error']}")
        return
    probe = run["probe"]
    print(f"   PyTorch CPU capability {run['cpu_capability']}; RAG_PRECISION=auto here → {run['auto']}")
    print("   probe, 96 abstracts embedded: " + ", ".join(f"{p} {v} passages/s" for p, v in probe.items()))
    speed = run.get("interleaved", {})
    if speed:
        ratios = ", ".join(
            f"{p} {speed[p]} passages/s = {speed[p] / speed['float32']:.2f}× float32" for p in probe if p in speed
        )
        print(f"   interleaved, {speed['passages']} of the index's passages in blocks of 64, order rotating: {ratios}")
    base = run["builds"].get("float32")
    for precision, row in run["builds"].items():
        rate = row["passages"] / row["build_s"]
        row["passages_per_s"] = round(rate, 1)
        line = f"   {precision:<9} build {row['build_s']:6.1f} s = {rate:5.1f} passages/s"
        if base:
            row["speedup_vs_float32"] = round(base["build_s"] / row["build_s"], 3)
            row["ndcg_delta"] = round(row["ndcg@10"] - base["ndcg@10"], 4)
            row["dense_ndcg_delta"] = round(row["dense_ndcg@10"] - base["dense_ndcg@10"], 4)
            line += f" ({row['speedup_vs_float32']:.2f}× float32)"
        line += f" · nDCG@10 {row['ndcg@10']:.4f}"
        if base:
            line += f" ({row['ndcg_delta']:+.4f})"
        line += f" · dense only {row['dense_ndcg@10']:.4f}"
        if base:
            line += f" ({row['dense_ndcg_delta']:+.4f}) · cosine to float32 mean/min {row['cosine_to_float32'][0]:.5f} / {row['cosine_to_float32'][1]:.5f}"
        print(line + f" · {row['arithmetic']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--docs", type=int, default=1000, help="SciFact abstracts in the corpus (default 1000; 5183 = all)"
    )
    parser.add_argument(
        "--kinds", default="native,avx2", help=f"kinds of CPU, of {', '.join(KINDS)} (default native,avx2)"
    )
    parser.add_argument("--timeout", type=float, default=3000, help="seconds one kind may take")
    parser.add_argument(
        "--blocks", type=int, default=10, help="blocks of 64 passages timed interleaved (default 10; 0: none)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 150 abstracts, 3 blocks")
    parser.add_argument(
        "--speed-only",
        action="store_true",
        help="only the probe and the interleaved timing, on the "
        "passages of the float32 indexes an earlier run with the same --docs built",
    )
    parser.add_argument(
        "--builds",
        help="precisions to build, e.g. float32,int8,int8:split (default: float32, "
        "bfloat16 where native, int8; int8:NAME is an int8 recipe of RECIPES)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--probe", type=lambda raw: raw.split(","), help=argparse.SUPPRESS)
    parser.add_argument(
        "--build", type=lambda raw: [p for p in raw.split(",") if p], default=[], help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.quick:
        args.docs, args.blocks = 150, 3
    info = machine()
    print_machine(info)
    flags = print_vector_flags()
    started = time.perf_counter()
    folder = write_subset(args.docs)
    documents = sum(1 for _ in open(folder / "corpus.jsonl", encoding="utf-8"))
    print(f"corpus: {documents} SciFact abstracts (every abstract judged in the test qrels first), {folder}")
    figures = {"machine": info, "cpu_flags": flags, "docs": documents, "kinds": {}}
    for kind in args.kinds.split(","):
        native_bf16 = kind == "native" and any(f in flags for f in ("avx512_bf16", "amx_bf16"))
        build = [p for p in PRECISIONS if p != "bfloat16" or native_bf16]  # emulated bfloat16 is only probed
        build = args.builds.split(",") if args.builds else build
        build = [] if args.speed_only else build
        run = run_kind(kind, folder, list(PRECISIONS), build, args.blocks, args.timeout)
        report(run)
        figures["kinds"][kind] = {**run, "limits": KINDS[kind]}
        if "error" in run:
            json_line("precision", {**figures, "error": f"{kind}: {run['error'][:300]}"})
            return 1
    return finish("precision", figures, started)


if __name__ == "__main__":
    sys.exit(main())

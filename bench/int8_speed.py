"""int8 recipes, batch sizes and torch threads side by side, interleaved in one process, on a CPU limited to
AVX2 (emulated) or as it is: passages/s against float32 over the same blocks of SciFact passages, and the
cosine of each variant's vectors to float32's on those passages.

    .venv/bin/python bench/int8_speed.py --quick               # 2 blocks of 64, AVX2 emulated
    .venv/bin/python bench/int8_speed.py                       # 5 blocks of 96, 10 variants
    .venv/bin/python bench/int8_speed.py --blocks 6 --block 256 --variants "float32,float32 workers,int8 ffn-out float32 workers,int8 ffn-out split 8 workers,int8 ffn-out int8 workers"
    .venv/bin/python bench/int8_speed.py --blocks 24 --block 32 --variants "float32,int8 ffn-out float32,int8 ffn-out split 8,int8 ffn-out int8"
    .venv/bin/python bench/int8_speed.py --kind native --blocks 4 --block 256 --variants "float32,float32 workers,bfloat16,bfloat16 workers,int8 ffn-out float32 workers,int8 ffn-out split 8 workers"
    .venv/bin/python bench/int8_speed.py --kind native --blocks 6 --block 128 --whole 512 --variants "float32,bfloat16 unpacked workers,bfloat16 workers"

Passages: rag's own chunking (sentences packed to 254 model tokens, one sentence of overlap) of the
SciFact subset bench/precision.py writes (every test-judged abstract first, --docs in all), then
--blocks evenly spaced blocks of --block passages. Every block is embedded by every variant, the order
rotating from block to block, so that other work on the machine slows all alike; the figures are the
wall-clock passages/s, the median of the per-block ratios to float32, and passages per CPU-second of
this process (robust to other work taking the cores, as long as the threads do not spin). Then, to tell the cost
of batching apart from the arithmetic, float32 and the int8 recipes each embed --whole passages in one call
(batched as in `rag build`: one token length per batch where possible, rag.embed.batching), twice, alternating,
as do both "workers" variants.
The padding share of each batching (tokens fed / real tokens) is counted without timing.

Variants (see rag.embed.embedder.Int8Recipe): float32; int8 with each block's feed-forward output layer kept
float32, quantized whole, or split (its 8 input channels of largest calibration peak stay float32, the
other 1,528 run int8); weights per output channel or per tensor; with --more, no smoothing, torch at one
thread, batches of 64. Each runs a call's batches one after another over all torch threads (`workers` 1,
how rag embedded before 2026-12-02), except the "workers" variants: the batches shared among one thread
per torch thread, each running the model on one torch thread (rag.embed.embedder's default since). A block
must hold several batches for workers to share it. "bfloat16 unpacked workers" casts the linear layers to
bfloat16 as rag did before its weights were packed once for oneDNN (rag.embed.embedder.bfloat16_linears). Speed here is the figure; quality of the recipe `auto` ships is
measured through `rag eval` by bench/precision.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import Timer, bfloat16_cast, finish, machine, print_machine, print_vector_flags

from precision import KINDS, kind_environment, write_subset

VARIANTS = {  # name: (precision, recipe fields, batch size, torch threads, workers: 1 one pass, 0 one per thread)
    "float32": ("float32", None, 32, None, 1),
    "int8 ffn-out float32": ("int8", {"ffn_output": "float32"}, 32, None, 1),
    "float32 workers": ("float32", None, 32, None, 0),
    "int8 ffn-out float32 workers": ("int8", {"ffn_output": "float32"}, 32, None, 0),
    "int8 ffn-out split 8 workers": ("int8", {"ffn_output": "split", "outliers": 8}, 32, None, 0),  # shipped since 2026-12-02
    "int8 ffn-out int8 workers": ("int8", {"ffn_output": "int8"}, 32, None, 0),
    "bfloat16": ("bfloat16", None, 32, None, 1),  # the arithmetic `auto` picks where bfloat16 is native
    "bfloat16 workers": ("bfloat16", None, 32, None, 0),
    "bfloat16 unpacked workers": ("bfloat16", {"unpacked": True}, 32, None, 0),  # rag before 2026-12-02 21:00
    "int8 ffn-out float32, per-tensor": ("int8", {"ffn_output": "float32", "per_channel": False}, 32, None, 1),
    "int8 ffn-out split 8": ("int8", {"ffn_output": "split", "outliers": 8}, 32, None, 1),
    "int8 split, per-tensor": ("int8", {"ffn_output": "split", "per_channel": False}, 32, None, 1),
    "int8 ffn-out int8": ("int8", {"ffn_output": "int8"}, 32, None, 1),
}
MORE = {  # --more: what else was tried (2026-12-01: none of it helped on a loaded machine)
    "int8 split, unsmoothed": ("int8", {"ffn_output": "split", "smoothing": 0.0}, 32, None, 1),
    "int8 split, 1 thread": ("int8", {"ffn_output": "split"}, 32, 1, 1),
    "int8 split, batch 64": ("int8", {"ffn_output": "split"}, 64, None, 1),
    "float32, batch 64": ("float32", None, 64, None, 1),
}
QUICK = ["float32", "float32 workers", "int8 ffn-out float32 workers", "int8 ffn-out split 8 workers"]
WHOLE = ["float32", "int8 ffn-out float32", "float32 workers", "int8 ffn-out float32 workers", "int8 ffn-out split 8 workers",
         "int8 ffn-out int8 workers", "bfloat16", "bfloat16 workers", "bfloat16 unpacked workers"]
"""The variants that also embed --whole passages in one call, as `rag build` does."""


def passages(folder: Path, embedder) -> list[str]:
    """rag's passages of the subset's documents, in file order."""
    from rag.ingest.chunking import pack_passages
    from rag.eval.evaluate import load_beir

    dataset = load_beir(folder, "test")
    texts = []
    for text in dataset.files.values():
        texts += [text[a:b] for a, b in pack_passages(text, embedder.count_tokens, embedder.max_tokens - 2, 1)]
    return texts


def padding(embedder, texts: list[str], batch: int, window: int) -> float:
    """Tokens fed to the model / real tokens, when each `window` texts are batched as rag.embed.embedder batches
    them (rag.embed.batching: one token length per batch where possible; by characters until 2026-12-03, which this
    figure used to miss by sorting by tokens: bench/batching.py)."""
    from rag.embed.batching import padding as fed_over_real
    from rag.embed.batching import plan_batches

    lengths = embedder.fed_tokens(texts)
    batches = [[start + i for i in rows] for start in range(0, len(lengths), window)
               for rows in plan_batches(lengths[start:start + window], batch)]
    return round(fed_over_real(lengths, batches), 3)


def load_variants(names: list[str]) -> dict:
    """One embedder per distinct (precision, recipe); variants that differ only in batch or threads share it."""
    from rag.embed.embedder import Int8Recipe, SentenceTransformerEmbedder

    models, loaded = {}, {}
    for name in names:
        precision, recipe = VARIANTS[name][:2]
        key = (precision, json.dumps(recipe, sort_keys=True))
        if key not in models and recipe and recipe.get("unpacked"):  # bfloat16 linear layers cast, not packed
            with bfloat16_cast():
                models[key] = SentenceTransformerEmbedder("all-MiniLM-L6-v2", precision)
        elif key not in models:
            models[key] = SentenceTransformerEmbedder("all-MiniLM-L6-v2", precision, Int8Recipe(**recipe) if recipe else None)
        loaded[name] = models[key]
    return loaded


def embed(embedder, texts: list[str], batch: int, threads: int | None, workers: int):
    import torch

    before, shared = torch.get_num_threads(), embedder.workers
    if threads:
        torch.set_num_threads(threads)
    embedder.workers = workers
    try:
        return embedder.encode(texts, batch_size=batch)
    finally:
        torch.set_num_threads(before)
        embedder.workers = shared


def kernels(rounds: int = 12, tokens: int = 32 * 192) -> dict:
    """float32 (MKL) against int8 dynamic (FBGEMM) matrix products of the model's three layer shapes, `tokens`
    rows (a batch of 32 passages of 192 tokens), interleaved: the most int8 can gain on this CPU."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    torch.backends.quantized.engine = next(e for e in ("x86", "fbgemm") if e in torch.backends.quantized.supported_engines)
    figures = {}
    for inputs, outputs in ((384, 384), (384, 1536), (1536, 384)):
        layer = torch.nn.Sequential(torch.nn.Linear(inputs, outputs))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantized = quantize_dynamic(layer, {"0": per_channel_dynamic_qconfig}, dtype=torch.qint8)
        assert isinstance(quantized[0], DynamicLinear)
        x = torch.randn(tokens, inputs)
        seconds = {"float32": 0.0, "int8": 0.0}
        with torch.inference_mode():
            for n in range(rounds):
                for name in (("float32", "int8") if n % 2 else ("int8", "float32")):
                    model = layer if name == "float32" else quantized
                    started = time.perf_counter()
                    model(x)
                    seconds[name] += time.perf_counter() - started
        figures[f"{inputs}x{outputs}"] = round(seconds["float32"] / seconds["int8"], 3)
    return figures


def child(args) -> int:
    """Under the kind's limits: the interleaved blocks, the whole-call comparison, padding; one JSON line."""
    import numpy as np
    import torch

    if args.more:
        VARIANTS.update(MORE)
    kernel_speedups = kernels()
    names = QUICK if args.quick else args.variants.split(",") if args.variants else list(VARIANTS)
    models = load_variants(names)
    texts = passages(args.folder, models["float32"])
    step = max(1, len(texts) // args.blocks)
    blocks = [texts[start:start + args.block] for start in range(0, len(texts), step)][:args.blocks]
    for name in names:  # first forward passes (allocations, weight packing) are not timed
        embed(models[name], blocks[0][:2 * VARIANTS[name][2]], *VARIANTS[name][2:])
    seconds, cpu, vectors = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0), {name: [] for name in names}
    per_block = {name: [] for name in names}
    for n, block in enumerate(blocks):
        for name in names[n % len(names):] + names[:n % len(names)]:
            used = time.process_time()
            with Timer() as timer:
                vectors[name].append(embed(models[name], block, *VARIANTS[name][2:]))
            seconds[name] += timer.seconds
            cpu[name] += time.process_time() - used
            per_block[name].append(timer.seconds)
        print(f"block {n + 1}/{len(blocks)} done, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    count = sum(len(block) for block in blocks)
    base = np.concatenate(vectors["float32"])
    result = {"kind": args.child, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "torch_threads": torch.get_num_threads(), "passages_total": len(texts), "passages_timed": count,
              "blocks": len(blocks), "kernels_int8_over_float32": kernel_speedups, "variants": {}}
    for name in names:
        cosine = (np.concatenate(vectors[name]) * base).sum(axis=1)
        ratios = [f / v for f, v in zip(per_block["float32"], per_block[name])]
        result["variants"][name] = {"passages_per_s": round(count / seconds[name], 2),
                                    "passages_per_cpu_s": round(count / cpu[name], 2),
                                    "median_block_speedup": round(float(np.median(ratios)), 3),
                                    "cosine_mean": round(float(cosine.mean()), 5), "cosine_min": round(float(cosine.min()), 5)}
    whole = texts[:: max(1, len(texts) // args.whole)][:args.whole]
    pair = [name for name in WHOLE if name in models]
    whole_s = dict.fromkeys(pair, 0.0)
    for order in (pair, pair[::-1]):
        for name in order:
            with Timer() as timer:
                embed(models[name], whole, *VARIANTS[name][2:])
            whole_s[name] += timer.seconds
    result["whole"] = {"passages": len(whole), **{n: round(2 * len(whole) / s, 2) for n, s in whole_s.items()}}
    result["padding"] = {f"window {w}, batch {b}": padding(models["float32"], texts, b, w)
                         for w, b in ((args.block, 32), (len(texts), 32), (len(texts), 64), (len(texts), 16))}
    print(json.dumps(result))
    return 0


def report(run: dict) -> None:
    variants = run["variants"]
    base = variants["float32"]["passages_per_s"]
    print("int8 matrix products over float32's, the model's layer shapes, 6,144 rows: " +
          ", ".join(f"{shape} {ratio:.2f}x" for shape, ratio in run["kernels_int8_over_float32"].items()))
    print(f"PyTorch CPU capability {run['cpu_capability']}, torch threads {run['torch_threads']}; "
          f"{run['passages_timed']} of {run['passages_total']} passages timed, interleaved")
    cpu_base = variants["float32"]["passages_per_cpu_s"]
    print(f"{'variant':<34} {'passages/s':>10} {'x float32':>9} {'median block':>12} {'per CPU-s':>9} "
          f"{'x float32':>9} {'cosine mean':>11} {'min':>8}")
    for name, row in variants.items():
        row["speedup"] = round(row["passages_per_s"] / base, 3)
        row["cpu_speedup"] = round(row["passages_per_cpu_s"] / cpu_base, 3)
        print(f"{name:<34} {row['passages_per_s']:>10.2f} {row['speedup']:>8.2f}x {row['median_block_speedup']:>11.2f}x "
              f"{row['passages_per_cpu_s']:>9.2f} {row['cpu_speedup']:>8.2f}x {row['cosine_mean']:>11.5f} {row['cosine_min']:>8.5f}")
    whole = run["whole"]
    names = [n for n in whole if n != "passages"]
    print(f"one call of {whole['passages']} passages each, twice alternating: " +
          ", ".join(f"{n} {whole[n]} passages/s ({whole[n] / whole[names[0]]:.2f}x)" for n in names))
    print("padding (tokens fed / real tokens): " + ", ".join(f"{k}: {v}" for k, v in run["padding"].items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="avx2", choices=list(KINDS), help="kind of CPU (default avx2, emulated)")
    parser.add_argument("--docs", type=int, default=1000, help="SciFact abstracts to cut passages from (default 1000)")
    parser.add_argument("--blocks", type=int, default=5, help="interleaved blocks (default 5)")
    parser.add_argument("--block", type=int, default=96, help="passages per block (default 96)")
    parser.add_argument("--whole", type=int, default=256, help="passages embedded in one call per arm (default 256)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 variants, 2 blocks of 64, 128 in one call")
    parser.add_argument("--variants", help="comma-separated names of VARIANTS to run (float32 and the two int8 "
                        "recipes of the one-call comparison among them)")
    parser.add_argument("--more", action="store_true", help="also unsmoothed, 1 torch thread, batches of 64")
    parser.add_argument("--timeout", type=float, default=3000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.block, args.whole = 2, 64, 128
    if args.child:
        return child(args)
    info = machine()
    print_machine(info)
    flags = print_vector_flags()
    limits = ", ".join(f"{k}={v}" for k, v in KINDS[args.kind].items()) or "no limits"
    print(f"kind: {args.kind} ({'EMULATED on this CPU: ' + limits if KINDS[args.kind] else 'this CPU as it is'})")
    started = time.perf_counter()
    folder = write_subset(args.docs)
    env = kind_environment(args.kind)
    command = [sys.executable, __file__, "--child", args.kind, "--folder", str(folder), "--blocks", str(args.blocks),
               "--block", str(args.block), "--whole", str(args.whole)] + (["--quick"] if args.quick else []) + \
        (["--more"] if args.more else []) + \
        (["--variants", args.variants] if args.variants else [])
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, timeout=args.timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        print(f"NOT MEASURED: exit {done.returncode}")
        return 1
    run = json.loads(lines[-1])
    report(run)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return finish("int8_speed", {"machine": info, "cpu_flags": flags, "limits": KINDS[args.kind], **run}, started)


if __name__ == "__main__":
    sys.exit(main())

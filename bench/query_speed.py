"""Query speed: latency of the real question path at 10k, 100k and 1M passages, and memory (the server under
load: bench/load.py).

    .venv/bin/python bench/query_speed.py --quick       # 2,000 passages, a few questions, 1 and 2 threads
    .venv/bin/python bench/query_speed.py               # 10k, 100k, 1M passages

How the indexes are made: the first --articles SQuAD v1.1 dev articles are written as one file each
(paragraphs separated by blank lines) under bench/out/query_speed/corpus/, cut into passages by
rag's own chunker, and embedded for real with the bundled model (cached in bench/out/). An index
of N passages repeats those real passages (same file, same span, so every quote still verifies)
with copies' vectors SYNTHETIC: the real vector plus Gaussian noise (cosine ≈ 0.9 to it), renormalised.
The version is written with `write_whole` (one segment, so a large N gets whatever approximate index
rag/index/store.py picks above its threshold), with a
manifest whose file hashes match the corpus, so `rag serve` finds it up to date.

Each size is measured in a fresh child process (`--child`): load time, RSS after loading, and
per question (real SQuAD questions about those articles) the whole `rag.answer.quotes.answer` path —
embed the question with the real model, dense + BM25 search, fuse, score sentences, verify quotes —
with reranking on and off alternately, plus the dense and BM25 search alone; then its peak RSS
(VmHWM).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from harness import OUT, SQUAD, Timer, finish, machine, noisy_copies, peak_rss_mb, percentile, print_machine, rss_mb

WORK = OUT / "query_speed"
NOISE = 0.025
"""Per-component standard deviation of the noise added to copies' vectors (cosine ≈ 0.9 to the original)."""


# ---------------------------------------------------------------- the real base corpus and its vectors


def write_whole(root: Path, manifest, passages: list, vectors) -> Path:
    """Write a version holding all of `passages` in one new segment, the shape of a full build; not published."""
    from dataclasses import replace

    from rag.index import store
    from rag.index.manifest import SegmentEntry
    from rag.index.segment import APPROXIMATE_ABOVE, write_segment

    info = write_segment(store.segments_folder(root), passages, vectors, None, APPROXIMATE_ABOVE)
    files = {source: replace(entry, segment=info.name) for source, entry in manifest.files.items()}
    return store.write_version(
        root,
        replace(
            manifest,
            files=files,
            segments=(SegmentEntry(info.name),),
            index_type=info.index_type,
            passages=len(passages),
        ),
    )


def segment_folders(version: Path) -> list[Path]:
    """The folders of the segments a version lists, in order."""
    from rag.index import store
    from rag.index.manifest import Manifest

    return [version.parent / store.SEGMENTS / e.name for e in Manifest.read(version / store.MANIFEST).segments]


def write_base_corpus(folder: Path, articles: int) -> list[tuple[str, str]]:
    """The first `articles` SQuAD dev articles, one file each; returns (source, question) pairs about them."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"][:articles]
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    questions = []
    for n, article in enumerate(data):
        source = f"{n:02d}_{re.sub(r'[^A-Za-z0-9_-]+', '_', article['title'])}.txt"
        (folder / source).write_text("\n\n".join(p["context"] for p in article["paragraphs"]) + "\n", encoding="utf-8")
        questions += [(source, qa["question"]) for p in article["paragraphs"] for qa in p["qas"]]
    return questions


def base_passages_and_vectors(corpus: Path, embedder, batch_size: int):
    """rag's passages of the base corpus and their real vectors (cached under bench/out/)."""
    from rag.embed.arithmetic import vector_recipe
    from rag.ingest.chunking import passages_of
    from rag.ingest.corpus import scan

    documents = scan(corpus).documents
    passages = [p for d in documents for p in passages_of(d, embedder.count_tokens, embedder.max_tokens - 2, 1)]
    made_by = f"{embedder.precision} {vector_recipe(embedder.precision)}"  # vectors of one arithmetic per cache
    key = hashlib.sha1("\n".join([made_by, *(p.text for p in passages)]).encode()).hexdigest()[:12]
    cache = WORK / f"base-vectors-{key}.npy"
    if cache.exists():
        vectors = np.load(cache)
        print(f"base: {len(passages)} real passages from {len(documents)} files; vectors from {cache.name}")
    else:
        with Timer() as timer:
            vectors = embedder.encode([p.text for p in passages], batch_size=batch_size)
        np.save(cache, vectors)
        print(
            f"base: {len(passages)} real passages from {len(documents)} files embedded in {timer.seconds:.1f} s "
            f"({len(passages) / timer.seconds:.1f} passages/s), cached in {cache.name}"
        )
    return documents, passages, vectors, key


def make_index(root: Path, documents, base_passages, base_vectors, size: int, key: str, chosen) -> dict:
    """Write an index of `size` passages into `root` (reused when already made from the same base), stamped
    with the arithmetic `chosen` that embedded the base, as `rag build` stamps its own: questions embed in it."""
    from rag.config import Settings
    from rag.embed.arithmetic import vector_recipe
    from rag.index import bm25, store
    from rag.index.manifest import FORMAT_VERSION, FileEntry, Manifest
    from rag.index.segment import faiss_kind, make_faiss

    stamp = root / "bench-made-from.json"
    exact = faiss_kind(make_faiss(base_vectors[:1]))  # the exact kind rag writes now (flat-fp16 since 21:40)
    wanted = {
        "base": key,
        "size": size,
        "noise": NOISE,
        "format": FORMAT_VERSION,
        "precision": chosen.precision,
        "exact": exact,
    }
    live = store.current_version(root) if root.exists() else None
    if stamp.exists() and json.loads(stamp.read_text()) == wanted and live is not None:
        manifest = Manifest.read(live / store.MANIFEST)
        if manifest.passages == size and manifest.format_version == FORMAT_VERSION:
            return {"reused": True}  # (a `rag serve` that found it stale would have rebuilt it smaller)
    shutil.rmtree(root, ignore_errors=True)
    passages = [
        base_passages[i % len(base_passages)]
        if i < len(base_passages)
        else replace(
            base_passages[i % len(base_passages)],
            id=f"{base_passages[i % len(base_passages)].id}~{i // len(base_passages)}",
        )
        for i in range(size)
    ]
    with Timer() as vec_timer:
        vectors = noisy_copies(base_vectors, size, NOISE)
    counts: dict[str, int] = {}
    for p in passages:
        counts[p.source] = counts.get(p.source, 0) + 1
    settings = Settings()
    manifest = Manifest(
        model=settings.model,
        dimension=vectors.shape[1],
        max_tokens=settings.max_tokens,
        overlap=settings.overlap,
        files={d.source: FileEntry(d.sha256, d.encoding, counts.get(d.source, 0)) for d in documents},
        passages=size,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        tokenizer=dict(bm25.TOKENIZER),
        precision=chosen.precision,
        arithmetic=chosen.describe(),
        int8_recipe=vector_recipe(chosen.precision),
    )
    # Passages repeat, so stemming each distinct text once gives the very same BM25 index, faster.
    original_terms, memo = bm25.terms, {}
    bm25.terms = lambda text: memo[text] if text in memo else memo.setdefault(text, original_terms(text))
    try:
        with Timer() as write_timer:
            version = write_whole(root, manifest, passages, vectors)
            store.publish(root, version)
    finally:
        bm25.terms = original_terms
    stamp.write_text(json.dumps(wanted))
    kind = json.loads((version / store.MANIFEST).read_text())["index_type"]
    disk = sum(
        p.stat().st_size for folder in [version, *segment_folders(version)] for p in folder.rglob("*") if p.is_file()
    )
    return {
        "reused": False,
        "vectors_s": round(vec_timer.seconds, 1),
        "write_version_s": round(write_timer.seconds, 1),
        "index_type": kind,
        "disk_mb": round(disk / 2**20),
    }


# ---------------------------------------------------------------- one size, measured in a fresh process


def child(args) -> int:
    """Load the index, answer the questions with reranking on and off, print one JSON line."""
    from rag.answer.quotes import NO_ANSWER, STALE_INDEX, answer
    from rag.config import Settings
    from rag.embed.embedder import load_embedder
    from rag.search import Retriever

    questions = json.loads(Path(args.questions_file).read_text())
    settings = Settings(corpus=Path(args.corpus), index=Path(args.index))
    rss_start = rss_mb()
    with Timer() as model_timer:
        embedder = load_embedder(settings.model)
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    rss_model = rss_mb()
    with Timer() as index_timer:
        retriever = Retriever(settings)
    rss_loaded = rss_mb()
    loaded = retriever.index
    for q in questions[:3]:  # warm-up, not counted
        answer(q, retriever, settings)
    modes = {True: settings, False: settings.replace(sentence_scoring=False)}
    latency = {True: [], False: []}
    outcome = {True: {"answered": 0, "abstained": 0, "stale": 0}, False: {"answered": 0, "abstained": 0, "stale": 0}}
    dense_s, lexical_s, embed_s = [], [], []
    for n, question in enumerate(questions):
        for rerank in (True, False) if n % 2 == 0 else (False, True):
            started = time.perf_counter()
            result = answer(question, retriever, modes[rerank])
            latency[rerank].append(time.perf_counter() - started)
            tally = outcome[rerank]
            tally["stale" if result.text == STALE_INDEX else "abstained" if result.abstained else "answered"] += 1
        with Timer() as t:
            vector = embedder.encode([question])[0]
        embed_s.append(t.seconds)
        with Timer() as t:
            loaded.search_dense(vector, settings.candidates)
        dense_s.append(t.seconds)
        with Timer() as t:
            loaded.lexical.search(question, settings.candidates)
        lexical_s.append(t.seconds)
    ms = lambda values, q: round(1000 * percentile(values, q), 1)  # noqa: E731
    print(
        json.dumps(
            {
                "passages": len(loaded.passages),
                "index_type": loaded.manifest.index_type,
                "torch_threads": torch.get_num_threads(),
                "model_load_s": round(model_timer.seconds, 2),
                "index_load_s": round(index_timer.seconds, 2),
                "rss_start_mb": round(rss_start),
                "rss_after_model_mb": round(rss_model),
                "rss_after_load_mb": round(rss_loaded),
                "questions": len(questions),
                "rerank": {"p50_ms": ms(latency[True], 50), "p95_ms": ms(latency[True], 95), **outcome[True]},
                "no_rerank": {"p50_ms": ms(latency[False], 50), "p95_ms": ms(latency[False], 95), **outcome[False]},
                "embed_question_p50_ms": ms(embed_s, 50),
                "dense_search_p50_ms": ms(dense_s, 50),
                "dense_search_p95_ms": ms(dense_s, 95),
                "bm25_search_p50_ms": ms(lexical_s, 50),
                "bm25_search_p95_ms": ms(lexical_s, 95),
                "peak_rss_mb": round(peak_rss_mb()),
                "no_answer_text": NO_ANSWER[:20],
            }
        )
    )
    return 0


def measure_size(corpus: Path, index: Path, questions_file: Path, timeout: float, torch_threads: int) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--corpus",
            str(corpus),
            "--index",
            str(index),
            "--questions-file",
            str(questions_file),
            "--torch-threads",
            str(torch_threads),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-1500:]}"}
    return json.loads(lines[-1])


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    global WORK
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="passages per index, comma-separated")
    parser.add_argument(
        "--articles", type=int, default=10, help="SQuAD dev articles in the real base corpus (default 10)"
    )
    parser.add_argument("--questions", type=int, default=40, help="questions timed per size and mode (default 40)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds one size's child process may take")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch intra-op threads in the measured processes (default 0: torch's own choice, as rag runs)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 articles, 2,000 passages, 6 questions")
    parser.add_argument(
        "--out", type=Path, default=WORK, help=f"folder for the corpus, indexes and caches (default {WORK})"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--questions-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    WORK = args.out
    if args.quick:
        args.sizes, args.articles, args.questions = "2000", 2, 6
    sizes = [int(s) for s in args.sizes.split(",")]
    info = machine()
    print_machine(info)
    started = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    corpus = WORK / f"corpus-{args.articles}"
    pairs = write_base_corpus(corpus, args.articles)
    questions = [q for _, q in random.Random(0).sample(pairs, min(len(pairs), args.questions))]
    questions_file = WORK / "questions.json"
    questions_file.write_text(json.dumps(questions))

    from rag.embed.embedder import load_embedder

    embedder = load_embedder("all-MiniLM-L6-v2")
    documents, base_passages, base_vectors, key = base_passages_and_vectors(corpus, embedder, 32)
    figures = {
        "machine": info,
        "base_passages": len(base_passages),
        "questions": len(questions),
        "torch_threads": args.torch_threads or "default",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", "default"),
        "sizes": {},
    }
    for size in sizes:
        index = WORK / f"index-{size}"
        made = make_index(index, documents, base_passages, base_vectors, size, key, embedder.chosen)
        result = measure_size(
            corpus,
            index,
            questions_file,
            args.timeout,
            args.torch_threads,
        )
        result["made"] = made
        figures["sizes"][size] = result
        if "error" in result:
            print(f"{size:>9,} passages: NOT MEASURED: {result['error']}")
            continue
        r, n = result["rerank"], result["no_rerank"]
        print(
            f"{size:>9,} passages ({result['index_type']}, torch threads {result['torch_threads']}, OMP_WAIT_POLICY "
            f"{figures['omp_wait_policy']}, GOMP_SPINCOUNT {figures['gomp_spincount']}; index {'reused' if made['reused'] else 'written in ' + format(made['write_version_s'], '.0f') + ' s'}): "
            f"rerank p50 {r['p50_ms']:.0f} ms p95 {r['p95_ms']:.0f} ms · no rerank p50 {n['p50_ms']:.0f} ms p95 "
            f"{n['p95_ms']:.0f} ms · question embed p50 {result['embed_question_p50_ms']} ms, dense search p50 "
            f"{result['dense_search_p50_ms']} ms, BM25 p50 {result['bm25_search_p50_ms']} ms · index load "
            f"{result['index_load_s']:.1f} s · RSS after model {result['rss_after_model_mb']} MB, after index "
            f"{result['rss_after_load_mb']} MB, peak {result['peak_rss_mb']} MB "
            f"({'within' if result['peak_rss_mb'] <= 2048 else 'OVER'} 2 GB) · answered/abstained/stale "
            f"{r['answered']}/{r['abstained']}/{r['stale']} (rerank), {n['answered']}/{n['abstained']}/{n['stale']} (no rerank)"
        )
    return finish("query_speed", figures, started)


if __name__ == "__main__":
    sys.exit(main())

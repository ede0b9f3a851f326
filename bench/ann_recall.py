"""FAISS index choice: exact vs HNSW vs IVF (flat, SQ8): recall@10 against exact search and per-query latency.

    .venv/bin/python bench/ann_recall.py --quick     # 3,000 sentences, 100 questions, no synthetic sizes
    .venv/bin/python bench/ann_recall.py             # ~6 min of real embeddings, then 100k and 1M synthetic

Real part: sentences of SQuAD v1.1 dev paragraphs, then of SciFact abstracts (rag's own sentence
splitter), embedded with the bundled all-MiniLM-L6-v2 at batch 64 for at most --embed-budget
seconds (cached block by block in bench/out/ann/, so later runs reuse and extend them); queries are
held-out real SQuAD questions (their vectors are not in the index). Ground truth is exact
inner-product search (IndexFlatIP); recall@10 = |approximate top 10 ∩ exact top 10| / 10.
Latency: one query per `search` call with faiss.omp_set_num_threads(1), p50/p95.

Synthetic part (timing; the vectors are NOT real text): 100k = the real sentence vectors plus
noisy renormalised copies of them; 1M = the vectors of bench/query_speed.py's 1M index (real SQuAD
passage vectors plus noisy copies) when it exists, and its FAISS file when that is HNSW (else HNSW is
built here, ~7 min; without that index the 1M set is made from the sentence vectors). Recall there is
printed but says little: thousands of near-copies per point make the exact top 10 arbitrary.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
import time

import numpy as np

from harness import OUT, Timer, abstract_text, finish, machine, noisy_copies, percentile, print_machine, scifact_abstracts
from harness import squad_paragraphs_and_questions

WORK = OUT / "ann"
K = 10
BLOCK = 2048
QUERY_SPEED_1M = OUT / "query_speed" / "index-1000000"


# ---------------------------------------------------------------- real vectors

def real_sentences() -> list[str]:
    """Distinct sentences of SQuAD dev paragraphs, then of SciFact abstracts, in a fixed order."""
    from rag.ingest.chunking import split_sentences

    paragraphs, _ = squad_paragraphs_and_questions()
    texts = [p for _, p in paragraphs] + [abstract_text(r) for r in scifact_abstracts()]
    seen, sentences = set(), []
    for text in texts:
        for a, b in split_sentences(text):
            sentence = text[a:b]
            if len(sentence) >= 20 and sentence not in seen:
                seen.add(sentence)
                sentences.append(sentence)
    return sentences


def embed_with_budget(embedder, sentences: list[str], budget_s: float) -> tuple[np.ndarray, dict]:
    """Vectors of the first sentences, block by block, cached; new embedding stops after `budget_s`."""
    key = hashlib.sha1("\n".join(sentences).encode()).hexdigest()[:12]
    folder = WORK / f"sentences-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    blocks, spent, new = [], 0.0, 0
    for start in range(0, len(sentences), BLOCK):
        path = folder / f"{start // BLOCK:05d}.npy"
        if path.exists():
            blocks.append(np.load(path))
            continue
        if spent >= budget_s:
            break
        batch = sentences[start:start + BLOCK]
        with Timer() as timer:
            vectors = embedder.encode(batch, batch_size=64)
        spent += timer.seconds
        new += len(batch)
        np.save(path, vectors.astype(np.float32))
        blocks.append(vectors.astype(np.float32))
    vectors = np.ascontiguousarray(np.vstack(blocks)) if blocks else np.zeros((0, 384), np.float32)
    info = {"available": len(sentences), "embedded": len(vectors), "new_this_run": new,
            "new_seconds": round(spent, 1), "sentences_per_s": round(new / spent, 1) if spent else None}
    return vectors, info


def question_vectors(embedder, count: int) -> np.ndarray:
    """Real SQuAD questions (a fixed random sample), embedded; cached."""
    _, questions = squad_paragraphs_and_questions()
    chosen = [q for _, q in random.Random(1).sample(questions, count)]
    path = WORK / f"questions-{count}-{hashlib.sha1(' '.join(chosen).encode()).hexdigest()[:8]}.npy"
    if path.exists():
        return np.load(path)
    vectors = embedder.encode(chosen, batch_size=64)
    np.save(path, vectors.astype(np.float32))
    return vectors.astype(np.float32)


# ---------------------------------------------------------------- indexes and measurements

def build_hnsw(vectors: np.ndarray):
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80  # as rag/index/store.py
    index.add(vectors)
    return index


def build_ivfs(vectors: np.ndarray, nlist: int, seed: int = 0):
    """IVF-Flat and IVF-SQ8 sharing one k-means coarse quantizer (trained on at most 40·nlist vectors)."""
    import faiss

    d = vectors.shape[1]
    sample = vectors
    if len(vectors) > 40 * nlist:
        sample = vectors[np.random.default_rng(seed).choice(len(vectors), 40 * nlist, replace=False)]
    flat = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    with Timer() as train:
        flat.train(np.ascontiguousarray(sample))
    with Timer() as add_flat:
        flat.add(vectors)
    centroids = flat.quantizer.reconstruct_n(0, nlist)
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(centroids)
    sq8 = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sq8.own_fields = True
    quantizer.this.disown()
    with Timer() as add_sq8:
        sq8.train(np.ascontiguousarray(sample))  # the coarse quantizer is already trained: only the SQ ranges
        sq8.add(vectors)
    return flat, sq8, {"kmeans_s": train.seconds, "add_flat_s": add_flat.seconds, "sq8_s": add_sq8.seconds}


def index_bytes(index) -> int:
    import faiss

    return len(faiss.serialize_index(index))


def latencies(index, queries: np.ndarray) -> list[float]:
    """Seconds per single-query search (k=10), one FAISS thread."""
    import faiss

    faiss.omp_set_num_threads(1)
    for q in queries[:5]:
        index.search(q.reshape(1, -1), K)
    times = []
    for q in queries:
        started = time.perf_counter()
        index.search(q.reshape(1, -1), K)
        times.append(time.perf_counter() - started)
    faiss.omp_set_num_threads(2)
    return times


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f[f >= 0])) / K for t, f in zip(truth, found)]))


def evaluate(name: str, vectors: np.ndarray, queries: np.ndarray, latency_queries: int, hnsw=None,
             synthetic: bool = False) -> dict:
    """Every configuration on one set of vectors: recall@10 vs exact, latency, size, build time."""
    import faiss

    n, d = vectors.shape
    faiss.omp_set_num_threads(2)
    rows = []
    flat = faiss.IndexFlatIP(d)
    flat.add(vectors)
    _, truth = flat.search(queries, K)
    timed = queries[:latency_queries]

    def record(kind: str, params: str, index, build_s: float, found=None, set_param=None):
        if set_param:
            set_param()
        if found is None:
            _, found = index.search(queries, K)
        times = latencies(index, timed)
        row = {"index": kind, "params": params, "recall@10": round(recall(truth, found), 4),
               "p50_ms": round(1000 * percentile(times, 50), 3), "p95_ms": round(1000 * percentile(times, 95), 3),
               "build_s": round(build_s, 1), "bytes_per_vector": round(index_bytes(index) / n, 1) if n <= 200_000 else None}
        rows.append(row)
        print(f"  {name:>14} n={n:>9,}  {kind:<8} {params:<26} recall@10 {row['recall@10']:.4f}  "
              f"p50 {row['p50_ms']:8.3f} ms  p95 {row['p95_ms']:8.3f} ms  build {row['build_s']:6.1f} s"
              + (f"  {row['bytes_per_vector']:.0f} B/vector" if row["bytes_per_vector"] else ""))

    record("flat", "IndexFlatIP (exact)", flat, 0.0, found=truth)
    if hnsw is None:
        with Timer() as t:
            hnsw = build_hnsw(vectors)
        hnsw_build = t.seconds
    else:
        hnsw_build = float("nan")
    for ef in (64, 128, 256):
        record("hnsw", f"M=32 efSearch={ef}", hnsw, hnsw_build, set_param=lambda ef=ef: setattr(hnsw.hnsw, "efSearch", ef))
    nlist = int(round(4 * math.sqrt(n)))
    ivf_flat, ivf_sq8, times = build_ivfs(vectors, nlist)
    for nprobe in (16, 32, 64):
        record("ivf", f"nlist={nlist} nprobe={nprobe}", ivf_flat, times["kmeans_s"] + times["add_flat_s"],
               set_param=lambda p=nprobe: setattr(ivf_flat, "nprobe", p))
    for nprobe in (16, 32, 64):
        record("ivf-sq8", f"nlist={nlist} nprobe={nprobe}", ivf_sq8, times["kmeans_s"] + times["sq8_s"],
               set_param=lambda p=nprobe: setattr(ivf_sq8, "nprobe", p))
    memory = {"flat": 4 * d, "hnsw": 4 * d + 2 * 32 * 4 * 1.05, "ivf": 4 * d + 8, "ivf-sq8": d + 8}
    return {"name": name, "n": n, "synthetic": synthetic, "nlist": nlist, "rows": rows,
            "approx_bytes_per_vector": memory}


def load_query_speed_1m():
    """(vectors, its HNSW index or None) of bench/query_speed.py's 1M index, or None when it was not made."""
    import faiss

    from rag.index import store

    from rag.index import segment

    version = store.current_version(QUERY_SPEED_1M) if QUERY_SPEED_1M.exists() else None
    folders = store.segment_folders(version) if version is not None and version.exists() else []
    if len(folders) != 1 or not (folders[0] / segment.VECTORS).exists():
        return None
    folder = folders[0]
    index = faiss.read_index(str(folder / segment.FAISS)) if (folder / segment.FAISS).exists() else None
    if index is not None and "HNSW" not in type(index).__name__:
        index = None  # rag chose another type: HNSW is built here (minutes)
    return np.ascontiguousarray(np.load(folder / segment.VECTORS)), index


# ---------------------------------------------------------------- conclusions

def conclusions(results: list[dict], budget_ms: float, target: float) -> dict:
    """The size where exact search passes the latency budget, and the cheapest settings reaching the recall target."""
    flat = [(r["n"], next(row for row in r["rows"] if row["index"] == "flat")["p50_ms"]) for r in results]
    per_vector_ms = float(np.median([ms / n for n, ms in flat]))
    threshold = int(budget_ms / per_vector_ms) if per_vector_ms > 0 else None
    good = {}
    for r in results:
        for kind in ("hnsw", "ivf", "ivf-sq8"):
            ok = [row for row in r["rows"] if row["index"] == kind and row["recall@10"] >= target]
            if ok:
                best = min(ok, key=lambda row: row["p50_ms"])
                good.setdefault(r["name"], {})[kind] = f"{best['params']} (recall {best['recall@10']}, p50 {best['p50_ms']} ms)"
            else:
                good.setdefault(r["name"], {})[kind] = f"none reaches {target}"
    return {"flat_ms_per_million": round(per_vector_ms * 1e6, 1), "threshold_passages": threshold,
            "budget_ms": budget_ms, "settings_reaching_target": good}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embed-budget", type=float, default=360, help="seconds of new sentence embedding (default 360)")
    parser.add_argument("--queries", type=int, default=500, help="held-out SQuAD questions for recall (default 500)")
    parser.add_argument("--latency-queries", type=int, default=200, help="questions timed one by one (default 200)")
    parser.add_argument("--sizes", default="100000,1000000", help="synthetic sizes for timing, comma-separated ('' for none)")
    parser.add_argument("--latency-budget-ms", type=float, default=20.0,
                        help="exact search slower than this (p50, 1 thread) calls for an approximate index (default 20)")
    parser.add_argument("--target", type=float, default=0.95, help="recall@10 to reach (default 0.95)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3,000 sentences, 100 questions, no synthetic sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.queries, args.latency_queries, args.sizes = 100, 50, ""
    info = machine()
    print_machine(info)
    started = time.perf_counter()
    WORK.mkdir(parents=True, exist_ok=True)
    import faiss

    from rag.embed.embedder import load_embedder

    embedder = load_embedder("all-MiniLM-L6-v2")
    sentences = real_sentences()
    if args.quick:
        sentences = sentences[:3000]
    vectors, embedded = embed_with_budget(embedder, sentences, args.embed_budget)
    queries = question_vectors(embedder, args.queries)
    print(f"real: {embedded['embedded']:,} of {embedded['available']:,} SQuAD+SciFact sentences embedded "
          f"({embedded['new_this_run']:,} new this run in {embedded['new_seconds']} s"
          f"{', %s sentences/s' % embedded['sentences_per_s'] if embedded['sentences_per_s'] else ''}); "
          f"{len(queries)} held-out SQuAD questions; faiss {faiss.__version__}")
    results = [evaluate("real", vectors, queries, args.latency_queries)]
    for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
        hnsw = None
        if size == 1_000_000 and (reused := load_query_speed_1m()) is not None:
            synthetic, hnsw = reused
            print(f"synthetic 1M: vectors {'and HNSW ' if hnsw is not None else ''}of {QUERY_SPEED_1M} (real passage "
                  f"vectors + noisy copies){'' if hnsw is not None else '; building HNSW here takes ~7 min'}")
        else:
            synthetic = noisy_copies(vectors, size, noise=0.025)
            print(f"synthetic {size:,}: {len(vectors):,} real sentence vectors + noisy copies")
        results.append(evaluate(f"synthetic-{size // 1000}k", synthetic, queries, min(args.latency_queries, 100), hnsw=hnsw,
                                synthetic=True))
        del synthetic, hnsw
    verdict = conclusions(results, args.latency_budget_ms, args.target)
    print(f"exact search costs {verdict['flat_ms_per_million']} ms per million vectors per query (1 thread, median "
          f"over sizes): it passes {args.latency_budget_ms:g} ms at about {verdict['threshold_passages']:,} passages "
          f"(rag/index/store.py switches at 200,000)")
    for name, kinds in verdict["settings_reaching_target"].items():
        for kind, text in kinds.items():
            print(f"recall@10 ≥ {args.target} on {name}: {kind}: {text}")
    figures = {"machine": info, "embedded": embedded, "queries": len(queries), "results": results, "verdict": verdict}
    return finish("ann_recall", figures, started)


if __name__ == "__main__":
    sys.exit(main())

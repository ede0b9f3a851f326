"""`rag ask` from the terminal, end to end: asked of a running `rag serve` vs answered cold in a new
process, and what the cold answer consists of (imports, model, index, the question itself). Cold runs
alternate with the model run by rag's own encoder (rag.embed.bert, as shipped) and by sentence-transformers
(as before 2026-12-03), so the two are measured side by side.

Usage: .venv/bin/python bench/ask_speed.py [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

from harness import OUT, ROOT, finish, machine, print_machine

QUESTION = "When did the Russian military operation in Syria start?"
STAGES = r"""
import sys, time
t0 = time.perf_counter(); marks = []
def mark(name): marks.append((name, time.perf_counter()))
from rag.config import Settings; from rag.answer.quotes import answer; from rag.search import Retriever; mark("python + rag + numpy")
import torch; mark("import torch")
from rag.embed.embedder import load_embedder; settings = Settings.from_env(); load_embedder(settings.model); mark("load the model (rag.embed.bert)")
retriever = Retriever(settings); mark("load the index (FAISS, BM25 postings)")
answer(sys.argv[1], retriever, settings); mark("answer the question")
prev = t0
for name, t in marks: print(f"STAGE {t - prev:.3f} {name}"); prev = t
"""

LIBRARY = "import sys, rag.embed.bert; rag.embed.bert.supports = lambda folder: False; from rag.cli import main; sys.exit(main())"
"""`rag` with the model run by sentence-transformers, as every model was before rag.embed.bert."""


def run(args: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - started


def wait_for_server(process, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    for line in process.stdout:
        if "Running on local URL" in line:
            return
        if time.monotonic() > deadline:
            break
    raise SystemExit("rag serve did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs of each way (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 runs each")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    started = time.perf_counter()
    info = machine()
    print_machine(info)
    index = OUT / "ask_speed" / "index"
    env = dict(os.environ, RAG_CORPUS=str(ROOT / "seeds"), RAG_INDEX=str(index))
    rag = [sys.executable, "-m", "rag"]
    subprocess.run(rag + ["build"], env=env, check=True, capture_output=True)

    cold, library = [], []
    for _ in range(runs):
        cold.append(run(rag + ["ask", "--local", QUESTION], env))
        library.append(run([sys.executable, "-c", LIBRARY, "ask", "--local", QUESTION], env))
    stages: dict[str, list[float]] = {}
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", STAGES, QUESTION], env=env, check=True, capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            if line.startswith("STAGE "):
                _, seconds, name = line.split(" ", 2)
                stages.setdefault(name, []).append(float(seconds))

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        rag + ["serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_server(server)
        run(rag + ["ask", QUESTION], env)  # the server's first question warms its caches
        warm = [run(rag + ["ask", QUESTION], env) for _ in range(runs)]
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(f"\n`rag ask` end to end, {runs} runs each (median, min–max):")
    print(
        f"  cold, answered in a new process:  {statistics.median(cold):6.2f} s ({min(cold):.2f}–{max(cold):.2f})   target ≤ 5 s"
    )
    print(
        f"  cold, through sentence-transformers: {statistics.median(library):6.2f} s ({min(library):.2f}–{max(library):.2f})"
        f"   rag.embed.bert saves {statistics.median(library) - statistics.median(cold):.2f} s"
        f" ({statistics.median(library) / statistics.median(cold):.2f}x)"
    )
    print(
        f"  asked of the running rag serve:   {statistics.median(warm):6.2f} s ({min(warm):.2f}–{max(warm):.2f})   target ≤ 1 s"
    )
    print(f"  ratio cold / served: {statistics.median(cold) / statistics.median(warm):.1f}x")
    print("\nwhat the cold answer consists of (median seconds of each stage, in order):")
    for name, values in stages.items():
        print(f"  {statistics.median(values):6.2f}  {name}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    figures = {
        "machine": info,
        "runs": runs,
        "cold_s": round(statistics.median(cold), 3),
        "served_s": round(statistics.median(warm), 3),
        "cold_library_s": round(statistics.median(library), 3),
        "cold_library_all_s": [round(v, 3) for v in library],
        "cold_all_s": [round(v, 3) for v in cold],
        "served_all_s": [round(v, 3) for v in warm],
        "cold_stages_s": {name: round(statistics.median(v), 3) for name, v in stages.items()},
    }
    return finish("ask_speed", figures, started)


if __name__ == "__main__":
    raise SystemExit(main())

"""Load test: concurrent clients asking through the HTTP API, optionally while the index is rebuilt.

    .venv/bin/python bench/load.py                          # own server over a copy of seeds/ + indexes/
    .venv/bin/python bench/load.py --clients 50 --questions 20 --rebuild-during
    .venv/bin/python bench/load.py --url http://127.0.0.1:7860/ [--auth user:pw]

Each client is one `gradio_client.Client` in its own thread asking `/ask`. Only 127.0.0.1 (or
another loopback address) is ever asked. Without `--url` the script starts `rag serve` on a free
port over copies of the corpus and index folders, so the originals are never touched. With
`--rebuild-during`, once half the questions are answered it appends a paragraph to one corpus
file, runs `rag build`, and after the load checks that the server answers from the new index.
It prints errors and latency p50/p95/p99 and throughput, and exits 1 on any failed question.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from rag.config import Settings, is_loopback

QUESTIONS = [
    "When did the Russian military operation in Syria start?",
    "In how many countries will the terrorists now solve their problems?",
    "What were the two main tasks of Russia's military operation in Syria?",
    "Who is the deputy head of the Council of the Russian Diplomats Association?",
    "What is the tallest mountain in Africa?",
    "How do I bake sourdough bread at home?",
    "",
    "?!…",
    "Когда началась военная операция России в Сирии?",
    "When did it start? " * 2000,
]
"""Seed-corpus questions, off-topic ones and bad input, asked in turn (each client from its own offset)."""
NEW_FACT = "The lighthouse on Gull Island is painted bright red and white."
NEW_QUESTION = "What colour is the lighthouse on Gull Island?"
LIMIT_CLIENTS, LIMIT_QUESTIONS = 200, 100
"""Upper bounds on --clients and --questions, so a typo cannot flood the machine."""


@dataclass
class Tally:
    """What the clients saw, shared between their threads under a lock."""

    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    timed_out: int = 0
    answered_during_build: int = 0
    building: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self) -> int:
        return len(self.latencies) + len(self.failures)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; 0 for none."""
    if not values:
        return 0.0
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


def check_reply(reply) -> str:
    """Why a reply to `/ask` is not a proper answer, or "" when it is one."""
    if not isinstance(reply, dict) or not isinstance(reply.get("answer"), str) or not reply["answer"]:
        return f"malformed reply {str(reply)[:120]!r}"
    if not isinstance(reply.get("abstained"), bool):
        return "reply without an `abstained` flag"
    if not reply["abstained"] and not reply.get("citations"):
        return "an answer without citations"
    return ""


def ask_loop(
    url: str, auth, client_no: int, count: int, deadline: float, tally: Tally, half: threading.Event, total: int
):
    """One client: its own connection, `count` questions in turn, each bounded by the deadline."""
    from gradio_client import Client

    try:
        client = Client(url, auth=auth, verbose=False)
    except Exception as error:  # noqa: BLE001 - every failure is counted, none stops the others
        with tally.lock:
            tally.failures.extend([f"client {client_no} could not connect: {error}"] * count)
        return
    for n in range(count):
        question = QUESTIONS[(client_no + n) % len(QUESTIONS)]
        remaining = deadline - time.monotonic()
        started = time.perf_counter()
        problem = ""
        if remaining <= 0:
            problem = "not asked: the time limit was reached"
        else:
            try:
                problem = check_reply(client.submit(question, api_name="/ask").result(timeout=remaining))
            except TimeoutError:
                problem = "timed out"
            except Exception as error:  # noqa: BLE001
                problem = f"{type(error).__name__}: {str(error)[:200]}"
        elapsed = time.perf_counter() - started
        with tally.lock:
            if problem:
                tally.failures.append(f"client {client_no}, question {n + 1} ({question[:40]!r}): {problem}")
                tally.timed_out += problem == "timed out"
            else:
                tally.latencies.append(elapsed)
                tally.answered_during_build += tally.building
            if tally.done() * 2 >= total:
                half.set()


def rebuild(corpus: Path, index: Path, tally: Tally, report: dict) -> None:
    """Append one paragraph to the first corpus file and run `rag build` on it."""
    target = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix in (".txt", ".md"))[0]
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(f"\n\n{NEW_FACT}\n")
    started = time.perf_counter()
    with tally.lock:
        tally.building = True
    done = subprocess.run(
        [sys.executable, "-m", "rag", "build", "--corpus", str(corpus), "--index", str(index)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    with tally.lock:
        tally.building = False
    report.update(
        edited=target.relative_to(corpus).as_posix(),
        build_exit=done.returncode,
        build_seconds=round(time.perf_counter() - started, 1),
        build_summary=(done.stdout.strip() or done.stderr.strip()[-300:]),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(corpus: Path, index: Path, timeout: float = 300, extra: tuple[str, ...] = ()):
    """`rag serve` (with `extra` flags) on a free loopback port; returns (process, url). Its output is drained to stderr."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAG_AUTH", "RAG_AUTH_FILE", "RAG_HOST")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rag",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--corpus",
            str(corpus),
            "--index",
            str(index),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if "Running on local URL" in line:
            threading.Thread(target=shutil.copyfileobj, args=(process.stdout, sys.stderr), daemon=True).start()
            return process, f"http://127.0.0.1:{port}/"
    process.kill()
    raise SystemExit("load: the server did not start:\n" + "".join(seen[-30:]))


def run_load(
    url: str,
    auth,
    clients: int,
    questions: int,
    time_limit: float,
    corpus: Path | None,
    index: Path | None,
    rebuild_during: bool,
) -> dict:
    """Ask clients × questions through `/ask`; returns the figures printed at the end."""
    tally, half, report = Tally(), threading.Event(), {}
    total = clients * questions
    deadline = time.monotonic() + time_limit
    threads = [
        threading.Thread(target=ask_loop, args=(url, auth, n, questions, deadline, tally, half, total), daemon=True)
        for n in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    builder = None
    if rebuild_during:
        half.wait(timeout=max(0.0, deadline - time.monotonic()))
        builder = threading.Thread(target=rebuild, args=(corpus, index, tally, report), daemon=True)
        builder.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()) + 5)
    wall = time.perf_counter() - started
    if builder is not None:
        builder.join(timeout=600)
    with tally.lock:
        latencies, failures = list(tally.latencies), list(tally.failures)
        missing = total - len(latencies) - len(failures)  # threads still stuck past the deadline
    failures += ["no reply before the time limit"] * missing
    figures = dict(
        url=url,
        clients=clients,
        questions_per_client=questions,
        sent=total,
        answered=len(latencies),
        failed=len(failures),
        timed_out=tally.timed_out + missing,
        seconds=round(wall, 1),
        throughput=round(len(latencies) / wall, 2) if wall else 0.0,
        p50=round(percentile(latencies, 50), 3),
        p95=round(percentile(latencies, 95), 3),
        p99=round(percentile(latencies, 99), 3),
        max=round(max(latencies, default=0.0), 3),
        failures=failures[:20],
    )
    if rebuild_during:
        figures.update(report, answered_during_build=tally.answered_during_build)
        figures["new_index_served"] = _serves_new_fact(url, auth)
    return figures


def _serves_new_fact(url: str, auth) -> bool:
    """True when the server now quotes the paragraph the rebuild added."""
    from gradio_client import Client

    try:
        reply = Client(url, auth=auth, verbose=False).predict(NEW_QUESTION, api_name="/ask")
    except Exception:  # noqa: BLE001
        return False
    return any(NEW_FACT in c.get("quote", "") for c in reply.get("citations", []))


def print_figures(figures: dict) -> None:
    print(
        f"load: {figures['clients']} clients × {figures['questions_per_client']} questions = {figures['sent']} "
        f"questions to {figures['url']}"
    )
    if "build_exit" in figures:
        print(
            f"rebuild: appended to {figures['edited']}; `rag build` exit {figures['build_exit']} in "
            f"{figures['build_seconds']} s: {figures['build_summary']}"
        )
        print(
            f"rebuild: {figures['answered_during_build']} questions answered while it ran; "
            f"new index served afterwards: {'yes' if figures['new_index_served'] else 'NO'}"
        )
    print(f"questions: {figures['answered']} answered, {figures['failed']} failed ({figures['timed_out']} timed out)")
    print(
        f"latency: p50 {figures['p50']:.2f} s · p95 {figures['p95']:.2f} s · p99 {figures['p99']:.2f} s · "
        f"max {figures['max']:.2f} s"
    )
    print(f"throughput: {figures['throughput']:.2f} questions/s over {figures['seconds']} s")
    for failure in figures["failures"]:
        print(f"  failed: {failure}")


def parse_args(argv=None) -> argparse.Namespace:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server on this machine (default: start one)")
    parser.add_argument(
        "--corpus", type=Path, default=settings.corpus, help="corpus folder (copied when starting a server)"
    )
    parser.add_argument(
        "--index", type=Path, default=settings.index, help="index folder (copied when starting a server)"
    )
    parser.add_argument(
        "--clients", type=int, default=50, help=f"concurrent clients (default 50, at most {LIMIT_CLIENTS})"
    )
    parser.add_argument(
        "--questions", type=int, default=20, help=f"questions per client (default 20, at most {LIMIT_QUESTIONS})"
    )
    parser.add_argument("--time-limit", type=float, default=900, help="seconds for the whole load (default 900)")
    parser.add_argument("--rebuild-during", action="store_true", help="edit a corpus file and `rag build` half-way")
    parser.add_argument("--auth", help="user:password when the server asks for an account")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= LIMIT_CLIENTS and 1 <= args.questions <= LIMIT_QUESTIONS):
        parser.error(f"--clients must be 1..{LIMIT_CLIENTS} and --questions 1..{LIMIT_QUESTIONS}")
    if args.url and not is_loopback(urlparse(args.url).hostname or ""):
        parser.error(f"--url {args.url} is not on this machine; this load test only asks loopback addresses")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    process, scratch = None, None
    try:
        corpus, index, url = args.corpus, args.index, args.url
        if url is None:
            scratch = Path(tempfile.mkdtemp(prefix="rag-load-"))
            corpus, index = scratch / "corpus", scratch / "index"
            shutil.copytree(args.corpus, corpus, symlinks=True)
            if Path(args.index).is_dir():
                shutil.copytree(args.index, index, symlinks=True, ignore=shutil.ignore_patterns(".lock", ".tmp-*"))
            process, url = start_server(corpus, index)
        figures = run_load(url, auth, args.clients, args.questions, args.time_limit, corpus, index, args.rebuild_during)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
    else:
        print_figures(figures)
    ok = figures["failed"] == 0
    if args.rebuild_during:
        ok = ok and figures.get("build_exit") == 0 and figures.get("new_index_served", False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

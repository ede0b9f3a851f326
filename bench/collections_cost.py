"""The cost of collections: a question over one collection of a server holding ten, against the same question on a
server holding that collection alone, side by side in one run (questions alternate between the two servers).

    .venv/bin/python bench/collections_cost.py --quick     # 2 articles a collection, 20 questions
    .venv/bin/python bench/collections_cost.py             # the 48 SQuAD v1.1 dev articles in 10 collections

Both servers answer through HTTP (`/gradio_api/call/ask`, the collection named in the request), on the same
indexes, one after the other for each question, so the machine's load falls on both alike.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import time
import urllib.request

from harness import OUT, Timer, finish, machine, percentile, print_machine, print_vector_flags
from load import start_server

COLLECTIONS = 10


def ask(url: str, question: str, collection: str) -> float:
    """Seconds until the answer came back complete."""
    body = json.dumps({"data": [question, collection, ""]}).encode()
    with Timer() as timer:
        request = urllib.request.Request(
            url + "gradio_api/call/ask", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as reply:
            event = json.loads(reply.read())["event_id"]
        with urllib.request.urlopen(url + f"gradio_api/call/ask/{event}", timeout=120) as reply:
            stream = reply.read().decode()
    if "event: complete" not in stream:
        raise SystemExit(f"collections_cost: no answer: {stream[:300]}")
    return timer.seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=0, help="articles a collection (default: all 48 spread)")
    parser.add_argument("--questions", type=int, default=100, help="questions asked of each server (default 100)")
    parser.add_argument("--quick", action="store_true", help="2 articles a collection, 20 questions")
    args = parser.parse_args(argv)
    if args.quick:
        args.articles, args.questions = 2, 20
    info = machine()
    print_machine(info)
    print_vector_flags()
    started = time.perf_counter()
    from harness import SQUAD

    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    work = OUT / "collections_cost"
    shutil.rmtree(work, ignore_errors=True)
    flags, questions = [], []
    for n in range(COLLECTIONS):
        folder = work / "corpora" / f"c{n}"
        folder.mkdir(parents=True)
        articles = data[n::COLLECTIONS][: args.articles or None]
        for article in articles:
            text = "\n\n".join(p["context"] for p in article["paragraphs"])
            (folder / f"{article['title'][:60]}.txt").write_text(text, encoding="utf-8")
            if n == 0:
                questions += [qa["question"] for p in article["paragraphs"] for qa in p["qas"]]
        flags += ["--collection", f"c{n}={folder}"]
    questions = random.Random(0).sample(questions, min(args.questions, len(questions)))
    ten, ten_url = start_server(work / "unused", work / "index", extra=tuple(flags))  # builds all ten first
    alone, alone_url = start_server(work / "unused", work / "index-alone", extra=tuple(flags[:2]))
    timings = {"one of ten": [], "alone": []}
    try:
        for server in (ten_url, alone_url):
            ask(server, questions[0], "c0")  # first answers load the model and the reader
        for question in questions:
            for name, url in (("one of ten", ten_url), ("alone", alone_url)):
                timings[name].append(ask(url, question, "c0"))
    finally:
        for process in (ten, alone):
            process.terminate()
            process.wait(timeout=30)
    figures = {"machine": info, "questions": len(questions)}
    for name, values in timings.items():
        figures[name] = {
            "p50_ms": round(1000 * statistics.median(values), 1),
            "p95_ms": round(1000 * percentile(values, 95), 1),
            "mean_ms": round(1000 * statistics.fmean(values), 1),
        }
    ratio = figures["one of ten"]["p50_ms"] / figures["alone"]["p50_ms"]
    figures["p50_ratio"] = round(ratio, 3)
    print(
        f"{len(questions)} questions over collection c0, alternating: one of ten p50 {figures['one of ten']['p50_ms']} ms "
        f"(p95 {figures['one of ten']['p95_ms']}), alone p50 {figures['alone']['p50_ms']} ms "
        f"(p95 {figures['alone']['p95_ms']}): {ratio:.3f}x ({'within' if ratio <= 1.10 else 'OVER'} the 1.10x target)"
    )
    return finish("collections_cost", figures, started)


if __name__ == "__main__":
    sys.exit(main())

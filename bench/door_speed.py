"""The doors other tools use, against the question asked in this process: latency through the OpenAI-compatible
endpoint and through Gradio's `/ask` beside the in-process path on the same index (alternating question by
question), then many clients through the OpenAI-compatible endpoint at once.

    .venv/bin/python bench/door_speed.py --quick        # 2 articles, 10 questions, 4 clients
    .venv/bin/python bench/door_speed.py                # 10 SQuAD v1.1 dev articles, 60 questions, 8 clients × 40
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import threading
import time
import urllib.request

from harness import OUT, SQUAD, Timer, finish, machine, percentile, print_machine, print_vector_flags
from load import start_server


def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.loads(reply.read())


def via_openai(url: str, question: str) -> dict:
    reply = post(url + "v1/chat/completions", {"model": "rag", "messages": [{"role": "user", "content": question}]})
    return reply["choices"][0]["message"]["rag"]


def via_gradio(url: str, question: str) -> dict:
    event = post(url + "gradio_api/call/ask", {"data": [question, "", ""]})["event_id"]
    with urllib.request.urlopen(url + f"gradio_api/call/ask/{event}", timeout=120) as reply:
        data = [line for line in reply.read().decode().splitlines() if line.startswith("data:")][-1]
    return json.loads(data[5:])[0]


def summary(values: list[float]) -> dict:
    return {"p50_ms": round(1000 * statistics.median(values), 1), "p95_ms": round(1000 * percentile(values, 95), 1)}


def load(url: str, questions: list[str], clients: int, each: int) -> dict:
    """`clients` threads asking `each` questions through the OpenAI-compatible endpoint."""
    latencies, failures, lock = [], [], threading.Lock()

    def client(n: int) -> None:
        for i in range(each):
            try:
                with Timer() as timer:
                    reply = via_openai(url, questions[(n * each + i) % len(questions)])
                ok = "citations" in reply
            except Exception as error:  # noqa: BLE001  every failure is counted and named
                ok, reply = False, repr(error)
            with lock:
                (latencies.append(timer.seconds) if ok else failures.append(str(reply)[:200]))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return {
        "clients": clients,
        "answered": len(latencies),
        "failed": len(failures),
        "failures": failures[:3],
        "questions_per_s": round(len(latencies) / seconds, 2),
        **summary(latencies),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--articles", type=int, default=10)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--each", type=int, default=40, help="questions each load client asks")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.articles, args.questions, args.clients, args.each = 2, 10, 4, 5
    info = machine()
    print_machine(info)
    print_vector_flags()
    started = time.perf_counter()
    work = OUT / "door_speed"
    shutil.rmtree(work, ignore_errors=True)
    (work / "corpus").mkdir(parents=True)
    questions = []
    for article in json.loads(SQUAD.read_text(encoding="utf-8"))["data"][: args.articles]:
        text = "\n\n".join(p["context"] for p in article["paragraphs"])
        (work / "corpus" / f"{article['title'][:60]}.txt").write_text(text, encoding="utf-8")
        questions += [qa["question"] for p in article["paragraphs"] for qa in p["qas"]]
    questions = random.Random(0).sample(questions, min(args.questions, len(questions)))
    server, url = start_server(work / "corpus", work / "index")  # builds the index first

    from rag.answer.quotes import answer
    from rag.config import Settings
    from rag.search import Retriever

    settings = Settings.from_env(corpus=work / "corpus", index=work / "index")
    retriever = Retriever(settings)
    arms = {
        "in process": lambda q: answer(q, retriever, settings).to_dict(),
        "OpenAI-compatible endpoint": lambda q: via_openai(url, q),
        "Gradio /ask": lambda q: via_gradio(url, q),
    }
    timings: dict[str, list[float]] = {name: [] for name in arms}
    try:
        for ask in arms.values():
            ask(questions[0])  # first answers load the model and the reader
        for question in questions:
            for name, ask in arms.items():
                with Timer() as timer:
                    ask(question)
                timings[name].append(timer.seconds)
        figures = {"machine": info, "questions": len(questions), **{name: summary(v) for name, v in timings.items()}}
        ratio = figures["OpenAI-compatible endpoint"]["p50_ms"] / figures["in process"]["p50_ms"]
        figures["openai_over_in_process_p50"] = round(ratio, 2)
        for name in arms:
            print(f"{name:<28} p50 {figures[name]['p50_ms']:7.1f} ms  p95 {figures[name]['p95_ms']:7.1f} ms")
        print(f"OpenAI-compatible endpoint over in process: {ratio:.2f}x ({'within' if ratio <= 2 else 'OVER'} 2x)")
        figures["load"] = load(url, questions, args.clients, args.each)
        found = figures["load"]
        print(
            f"load: {found['clients']} clients × {args.each}: {found['questions_per_s']} questions/s, {found['failed']} "
            f"failed, p50 {found['p50_ms']} ms, p95 {found['p95_ms']} ms "
            f"({'at least' if found['questions_per_s'] >= 10 else 'UNDER'} 10 questions/s)"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return finish("door_speed", figures, started)


if __name__ == "__main__":
    sys.exit(main())

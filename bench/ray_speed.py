"""Ray: build throughput on 1 vs 2 nodes of this machine, Ray's cost against the local build at equal
cores, and question throughput with 1 vs 2 Ray Serve replicas under bench/load.py.

    flock /tmp/rag-heavy.lock .venv/bin/python bench/ray_speed.py --quick   # 100 abstracts, ~4 min
    flock /tmp/rag-heavy.lock .venv/bin/python bench/ray_speed.py           # 800 SciFact abstracts

a. Builds of N SciFact abstracts (one file each), every one a full build of the same corpus, in one
   run: `rag build` with 1 torch thread; `rag build --ray` on a cluster of one node (1 CPU, so one
   actor with 1 torch thread); the same with a second node joined (2 actors); `rag build` with 2
   torch threads. Whole-build seconds (model loading included on both sides: it is part of what a
   build costs), passages/s, the 2-node / 1-node speedup, and Ray's time over the local build at
   equal cores. The nodes are raylets on this one machine (loopback), so 2 nodes share its 2 cores
   with everything else running: the speedup is a floor for 2 real machines.
b. `rag serve --ray --replicas R` for R = 1 and 2 (each replica 1 CPU, 1 torch thread) over the seed
   corpus, and plain `rag serve` beside them, each loaded by bench/load.py's clients through the chat
   page's `/ask`: questions/s and latency.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback stays loopback (rag/cluster/connect.py)

import load  # noqa: E402
from harness import OUT, ROOT, finish, machine, print_machine, write_scifact_corpus  # noqa: E402

from rag.config import Settings  # noqa: E402

NODE = dict(num_cpus=1, object_store_memory=200 * 1024**2, node_ip_address="127.0.0.1", include_dashboard=False)


def local_build(corpus: Path, index: Path, threads: int) -> dict:
    """`rag build --full` in its own process with `threads` torch threads; its summary."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rag", "build", "--full", "--json", "--corpus", str(corpus), "--index", str(index)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if done.returncode:
        raise SystemExit(f"bench: local build failed:\n{done.stderr[-2000:]}")
    import json

    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": round(time.perf_counter() - started, 1), "passages": summary["passages"]}


def ray_build(settings: Settings) -> dict:
    """`rag build --ray --full` from this process (the driver); whole seconds and the embedding rate."""
    from rag.cluster.build import build_on_cluster

    lines: list[str] = []
    started = time.perf_counter()
    summary = build_on_cluster(settings, full=True, progress=lines.append)
    seconds = time.perf_counter() - started
    embedded = [line for line in lines if line.startswith("embedded ")]
    return {
        "seconds": round(seconds, 1),
        "passages": summary.passages,
        "embedding_line": f"{embedded[0]}; {embedded[-1]}",
    }


def measure_builds(cluster, corpus: Path, scratch: Path) -> dict:
    settings = Settings(corpus=corpus, index=scratch / "ray-index", ray_address=cluster.address)
    figures = {}
    print("building: local, 1 torch thread …", flush=True)
    figures["local_1_thread"] = local_build(corpus, scratch / "local-index", 1)
    print("building: Ray, 1 node …", flush=True)
    figures["ray_1_node"] = ray_build(settings)
    cluster.add_node(**NODE)
    cluster.wait_for_nodes(timeout=120)
    print("building: Ray, 2 nodes …", flush=True)
    figures["ray_2_nodes"] = ray_build(settings)
    print("building: local, 2 torch threads …", flush=True)
    figures["local_2_threads"] = local_build(corpus, scratch / "local-index", 2)
    for entry in figures.values():
        entry["passages_per_s"] = round(entry["passages"] / entry["seconds"], 1)
    figures["speedup_2_nodes_over_1"] = round(figures["ray_1_node"]["seconds"] / figures["ray_2_nodes"]["seconds"], 2)
    figures["ray_over_local_1_core"] = round(figures["ray_1_node"]["seconds"] / figures["local_1_thread"]["seconds"], 2)
    figures["ray_over_local_2_cores"] = round(
        figures["ray_2_nodes"]["seconds"] / figures["local_2_threads"]["seconds"], 2
    )
    return figures


def start_front(address: str, corpus: Path, index: Path, replicas: int):
    """`rag serve --ray ADDRESS --replicas R` on free ports; (process, url) once the page is up."""
    extra = ("--ray", address, "--replicas", str(replicas), "--api-port", str(load.free_port()))
    return load.start_server(corpus, index, timeout=600, extra=extra)


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def measure_serving(cluster, scratch: Path, clients: int, questions: int) -> dict:
    corpus, index = scratch / "seed-corpus", scratch / "seed-index"
    shutil.copytree(ROOT / "seeds", corpus)
    from rag.build.indexer import build

    build(Settings(corpus=corpus, index=index))
    figures = {}
    process, url = load.start_server(corpus, index)
    try:
        figures["local_serve"] = load.run_load(url, None, clients, questions, 600, None, None, False)
    finally:
        stop(process)
    for replicas in (1, 2):
        print(f"serving: {replicas} replica(s) …", flush=True)
        process, url = start_front(cluster.address, corpus, index, replicas)
        try:
            figures[f"replicas_{replicas}"] = load.run_load(url, None, clients, questions, 600, None, None, False)
        finally:
            stop(process)
    figures["throughput_2_over_1_replica"] = round(
        figures["replicas_2"]["throughput"] / max(figures["replicas_1"]["throughput"], 1e-9), 2
    )
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 abstracts and a short load")
    parser.add_argument("--abstracts", type=int, help="SciFact abstracts to build (default 800, --quick 100)")
    parser.add_argument("--clients", type=int, default=8, help="load clients (default 8)")
    parser.add_argument("--questions", type=int, help="questions per client (default 10, --quick 4)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    info = machine()
    print_machine(info)
    abstracts = args.abstracts or (100 if args.quick else 800)
    questions = args.questions or (4 if args.quick else 10)
    from ray.cluster_utils import Cluster

    scratch = Path(tempfile.mkdtemp(prefix="rag-ray-bench-", dir=OUT if OUT.exists() else None))
    cluster = Cluster(initialize_head=True, head_node_args=dict(NODE))
    try:
        corpus = scratch / "corpus"
        write_scifact_corpus(corpus, abstracts)
        builds = measure_builds(cluster, corpus, scratch)
        print_builds(builds, abstracts)
        serving = measure_serving(cluster, scratch, args.clients, questions)
        print_serving(serving)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    return finish("ray_speed", {"machine": info, "abstracts": abstracts, "builds": builds, "serving": serving}, started)


def print_builds(builds: dict, abstracts: int) -> None:
    print(f"\nbuild of {abstracts} SciFact abstracts ({builds['local_1_thread']['passages']} passages), whole build:")
    for name in ("local_1_thread", "ray_1_node", "ray_2_nodes", "local_2_threads"):
        entry = builds[name]
        extra = f"  [{entry['embedding_line']}]" if "embedding_line" in entry else ""
        print(f"  {name:16s} {entry['seconds']:7.1f} s  {entry['passages_per_s']:6.1f} passages/s{extra}")
    print(f"  2 nodes over 1 node: {builds['speedup_2_nodes_over_1']:.2f}x faster")
    print(
        f"  Ray over local, equal cores: {builds['ray_over_local_1_core']:.2f}x the time at 1 core, "
        f"{builds['ray_over_local_2_cores']:.2f}x at 2 cores"
    )


def print_serving(serving: dict) -> None:
    print("\nquestions through the chat page's /ask (bench/load.py):")
    for name in ("local_serve", "replicas_1", "replicas_2"):
        entry = serving[name]
        print(
            f"  {name:12s} {entry['throughput']:5.2f} questions/s  p50 {entry['p50']:.2f} s  p95 {entry['p95']:.2f} s  "
            f"{entry['answered']} answered, {entry['failed']} failed"
        )
    print(f"  2 replicas over 1: {serving['throughput_2_over_1_replica']:.2f}x the questions/s")


if __name__ == "__main__":
    sys.exit(main())

"""Shared helpers for the benchmarks: evaluation corpora written under bench/out/, timers, memory, output.

Nothing here copies evaluation data into the repository: the texts are read from
/work/shared/eval/ (or $RAG_EVAL) by path and written only under bench/out/ (git-ignored) or /tmp.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
EVAL = Path(os.environ.get("RAG_EVAL", "/work/shared/eval"))
SCIFACT = EVAL / "scifact"
SQUAD = EVAL / "squad" / "dev-v1.1.json"


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    """The first `limit` records of a JSON-lines file."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(records) >= limit:
                break
            records.append(json.loads(line))
    return records


def scifact_abstracts(limit: int | None = None) -> list[dict]:
    """SciFact abstracts in file order: {"_id", "title", "text"}."""
    path = SCIFACT / "corpus.jsonl"
    if not path.exists():
        raise SystemExit(f"bench: {path} is missing; set RAG_EVAL to the folder holding scifact/ and squad/")
    return read_jsonl(path, limit)


def abstract_text(record: dict) -> str:
    """How SciFact documents are indexed: title + " " + text."""
    return f"{record['title']} {record['text']}"


def scifact_file_name(n: int, record: dict) -> str:
    return f"{n:05d}_{record['_id']}.txt"


def write_scifact_corpus(folder: Path, limit: int) -> list[Path]:
    """One file per abstract (title + " " + text) in a fresh `folder`; returns the paths."""
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    paths = []
    for n, record in enumerate(scifact_abstracts(limit)):
        path = folder / scifact_file_name(n, record)
        path.write_text(abstract_text(record), encoding="utf-8")
        paths.append(path)
    return paths


def squad_paragraphs_and_questions() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(article title, paragraph) and (article title, question) pairs of SQuAD v1.1 dev, in order."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    paragraphs, questions = [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            paragraphs.append((article["title"], paragraph["context"]))
            questions.extend((article["title"], qa["question"]) for qa in paragraph["qas"])
    return paragraphs, questions


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0 for none."""
    if not len(values):
        return 0.0
    ranked = sorted(values)
    return float(ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)])


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (VmHWM; getrusage as a fallback)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Current resident memory of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Timer:
    """`with Timer() as t: …` then `t.seconds`."""

    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started
        return False


def machine() -> dict:
    """What the figures were measured on."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0, 0, 0)
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_name(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_1m_at_start": round(load[0], 2),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", "default"),
    }


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name with its vendor, family, model and stepping: under a hypervisor the name alone can be
    `AMD EPYC`, which hides the generation (family 25 model 17 is Zen 4, with AVX512-BF16; Zen 2 and 3 have no AVX-512)."""
    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the first processor's block is enough
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return ""
    name = fields.get("model name", "")
    ids = " ".join(
        f"{label} {fields[key]}"
        for key, label in (("cpu family", "family"), ("model", "model"), ("stepping", "stepping"))
        if key in fields
    )
    vendor = fields.get("vendor_id", "")
    detail = ", ".join(part for part in (vendor, ids) if part)
    return f"{name} ({detail})" if detail else name


def print_vector_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """Print and return the first processor's avx*/amx* flags: what decides rag's arithmetic on this CPU."""
    flags = sorted(f for f in cpuinfo.read_text().split("\n\n")[0].split() if f.startswith(("avx", "amx")))
    print(f"CPU flags (avx*/amx*): {' '.join(flags)}")
    return flags


def print_machine(info: dict) -> None:
    print(
        f"machine: {info['cores']} cores ({info['cpu']}), Python {info['python']}, {info['date']}, "
        f"load average {info['loadavg_1m_at_start']} at start (other work on the machine slows absolute figures; "
        f"ratios are measured side by side); in the environment OMP_WAIT_POLICY {info['omp_wait_policy']}, "
        f"GOMP_SPINCOUNT {info['gomp_spincount']} (rag's embedder sets GOMP_SPINCOUNT=10000 when neither is set)"
    )


def json_line(name: str, figures: dict) -> None:
    """The closing machine-readable line: `BENCH_JSON {...}`."""
    print("BENCH_JSON " + json.dumps({"bench": name, **figures}, ensure_ascii=False, default=str))
    sys.stdout.flush()


def finish(name: str, figures: dict, started: float) -> int:
    """Close a run: its total seconds (also into `figures`), then the `BENCH_JSON` line; exit status 0."""
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(f"total {figures['seconds']:.0f} s")
    json_line(name, figures)
    return 0


def noisy_copies(base, size: int, noise: float, seed: int = 0):
    """`size` unit rows: `base` first, then renormalised noisy copies of its rows in turn
    (noise 0.025 gives cosine ≈ 0.9 to the originals). Stands in for real vectors at sizes
    too large to embed here."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = np.empty((size, base.shape[1]), dtype=np.float32)
    for start in range(0, size, 50_000):
        rows = np.arange(start, min(size, start + 50_000))
        chunk = base[rows % len(base)].copy()
        copies = rows >= len(base)
        chunk[copies] += rng.normal(0, noise, size=(int(copies.sum()), base.shape[1])).astype(np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start : start + len(rows)] = chunk
    return out

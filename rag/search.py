"""Search: dense and BM25 candidates, fused by score (or by rank); the live index is followed on disk."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rag.config import Settings
from rag.embed.arithmetic import compatible, query_arithmetic
from rag.embed.embedder import Embedder, load_embedder
from rag.errors import IndexDamaged, IndexMismatch, ModelError, RagError
from rag.index import store
from rag.index.bm25 import top
from rag.types import Hit

log = logging.getLogger(__name__)

RRF_K = 60
"""Reciprocal rank fusion constant (Cormack et al. 2009)."""


def rank_fusion(rankings: list[list[int]], k: int = RRF_K, weights: list[float] | None = None) -> dict[int, float]:
    """Reciprocal rank fusion (RRF): each list votes 1 / (k + rank) for its items (rank from 1)."""
    weights = weights or [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def score_fusion(cosine: dict[int, float], bm25: dict[int, float], dense_weight: float) -> dict[int, float]:
    """Convex score fusion: `dense_weight` × cosine + (1 − `dense_weight`) × BM25 / the best BM25 score.

    Every candidate needs its cosine; a candidate BM25 did not match scores 0 on that side. Cosines
    keep their own scale and BM25 is divided by its maximum, the "theoretical min-max" form of
    Bruch et al. (2023), which does not depend on how many candidates were fetched.
    """
    best = max(bm25.values(), default=0.0)
    share = (1.0 - dense_weight) / best if best > 0 else 0.0
    return {row: dense_weight * value + share * bm25.get(row, 0.0) for row, value in cosine.items()}


@dataclass(frozen=True)
class Scope:
    """The folders and files of a corpus a question is narrowed to, by their path in the corpus (`reports/2026`,
    `notes/plan.md`); none means the whole corpus. Applied inside the search, so the best passages are the best
    ones in scope."""

    paths: tuple[str, ...] = ()

    @classmethod
    def of(cls, text: str | None) -> Scope:
        """A scope from comma-separated paths (`reports/, notes/plan.md`)."""
        parts = (part.strip().strip("/") for part in (text or "").split(","))
        return cls(tuple(part for part in parts if part and part != "."))

    def covers(self, source: str) -> bool:
        return not self.paths or any(source == path or source.startswith(path + "/") for path in self.paths)

    def sources(self, files) -> frozenset[str] | None:
        """The files of `files` (an index's sources) in scope, or None for the whole corpus."""
        return None if not self.paths else frozenset(source for source in files if self.covers(source))


class Retriever:
    """Answers `search` from the live index version, reloading it when a build swaps in a new one."""

    def __init__(
        self,
        settings: Settings,
        embedder_factory: Callable[[str], Embedder] | None = None,
        collection: str | None = None,
    ):
        """`embedder_factory` defaults to rag's own model in the index's arithmetic; `collection` names the
        collection this index belongs to (None on a server of one corpus), carried by every hit."""
        self.settings = settings
        self.collection = collection
        self._embedder_factory = embedder_factory
        self._lock = threading.Lock()
        self._loaded: store.LoadedIndex | None = None
        self._loaded_pointer: str | None = None
        self.reload_error: str = ""
        self.refresh()

    @property
    def index(self) -> store.LoadedIndex:
        """The index version questions are answered from now."""
        return self._loaded

    @property
    def embedder(self) -> Embedder:
        """The model the live index was built with, in its arithmetic (queries must use the same)."""
        return self.query_embedder(self._loaded)

    def snapshot(self) -> store.LoadedIndex:
        """The live version, reloaded first if a build published a newer one; a question that keeps
        this value is answered from one version, whatever lands meanwhile."""
        self.refresh()
        return self._loaded

    def query_embedder(self, loaded: store.LoadedIndex) -> Embedder:
        """The index's model in the index's arithmetic, or a compatible one; refuses an incompatible one."""
        manifest = loaded.manifest
        if self._embedder_factory is None:
            return load_embedder(manifest.model, query_arithmetic(manifest.precision).precision)
        embedder = self._embedder_factory(manifest.model)
        ran = getattr(embedder, "precision", None)
        if ran is not None and not compatible(ran, manifest.precision):
            raise IndexMismatch(
                f"the index in {self.settings.index} holds {manifest.precision} vectors but questions would be "
                f"embedded in {ran}; embed them in {manifest.precision} or run `rag build --full`"
            )
        return embedder

    def refresh(self) -> bool:
        """Load a newer version if the pointer moved; keep serving the old one if the new one is bad."""
        pointer = self._pointer()
        if pointer == self._loaded_pointer and self._loaded is not None:
            return False
        with self._lock:
            if pointer == self._loaded_pointer and self._loaded is not None:
                return False
            try:
                loaded = store.load(self.settings.index, reuse=self._loaded)
                self._check_model(loaded)
                self.query_embedder(loaded)  # load the model before switching
            except RagError as error:
                if self._loaded is None:
                    raise
                self.reload_error = str(error)
                log.error("kept serving %s: new index not loaded: %s", self._loaded.folder.name, error)
                self._loaded_pointer = pointer  # do not retry the same broken version on every question
                return False
            self._loaded, self._loaded_pointer, self.reload_error = loaded, pointer, ""
            log.info("serving index %s (%d passages)", loaded.folder.name, len(loaded.passages))
            return True

    def _pointer(self) -> str | None:
        try:
            folder = store.current_version(self.settings.index)
        except IndexDamaged:  # store.load names the damage; the old index stays
            return None
        return folder.name if folder else None

    def _check_model(self, loaded: store.LoadedIndex) -> None:
        if loaded.manifest.model != self.settings.model:
            raise IndexMismatch(
                f"the index in {self.settings.index} was built with model {loaded.manifest.model!r} but "
                f"settings ask for {self.settings.model!r}; run `rag build` to rebuild it, or use "
                f"--model {loaded.manifest.model}"
            )

    def search(
        self,
        query: str,
        k: int = 10,
        query_vector: np.ndarray | None = None,
        index: store.LoadedIndex | None = None,
        scope: Scope | None = None,
    ) -> list[Hit]:
        """The `k` best passages for `query` inside `scope`, each with its fused score and dense cosine, from
        `index` (a `snapshot`) or the live version."""
        loaded = index or self.snapshot()
        sources = scope.sources(loaded.manifest.files) if scope is not None else None
        if not loaded.passages or sources == frozenset():
            return []
        if query_vector is None:
            query_vector = self.query_embedder(loaded).encode([query])[0]
        depth = max(k, self.settings.candidates)
        dense = loaded.search_dense(query_vector, depth, sources)
        bm25_scores = loaded.lexical.scores(query) if self.settings.hybrid else None
        if bm25_scores is not None and sources is not None:
            bm25_scores = np.where(loaded.rows_of(sources), bm25_scores, np.float32(0))
        lexical = lexical_candidates(bm25_scores, loaded.passages, depth) if bm25_scores is not None else []
        cosine = dict(dense)
        missing = [r for r, _ in lexical if r not in cosine]
        if missing:  # BM25-only candidates: exact cosines from this version's stored vectors
            stored = np.asarray(loaded.vectors[np.asarray(missing)], dtype=np.float32)
            cosine.update(zip(missing, (stored @ query_vector).tolist()))
        bm25 = {r: float(bm25_scores[r]) for r in cosine} if bm25_scores is not None else {}
        weight = self.settings.dense_weight if self.settings.hybrid else 1.0
        if self.settings.fusion == "rrf":
            fused = rank_fusion([[r for r, _ in dense], [r for r, _ in lexical]], weights=[weight, 1.0 - weight])
        else:
            fused = score_fusion(cosine, bm25, weight)
        depth_to_rerank = max(k, RERANK_DEPTH) if self.settings.cross_encoder else k
        rows = [row for row, _ in store.settle_ties(list(fused.items()), loaded.passages, depth_to_rerank)]
        hits = [Hit(loaded.passages[r], fused[r], float(cosine[r]), bm25.get(r, 0.0), self.collection) for r in rows]
        if self.settings.cross_encoder:
            hits = rerank(query, hits, load_cross_encoder(self.settings.cross_encoder))
        return hits[:k]


def search_collections(
    searches: list[tuple[Retriever, store.LoadedIndex]], query: str, k: int, query_vector: np.ndarray, scope=None
) -> list[Hit]:
    """The `k` best passages over several collections, each searched in the version given (with its own BM25
    statistics) and merged by fused score; one collection's hits exactly as its own search ranks them."""
    if len(searches) == 1:
        retriever, index = searches[0]
        return retriever.search(query, k, query_vector, index, scope)
    hits = [hit for retriever, index in searches for hit in retriever.search(query, k, query_vector, index, scope)]
    return sorted(hits, key=lambda hit: (-hit.score, hit.collection or "", hit.passage.source, hit.passage.start))[:k]


def lexical_candidates(scores: np.ndarray, passages, k: int) -> list[tuple[int, float]]:
    """The `k` best positive BM25 scores as (row, score), equal scores settled as `store.settle_ties` does."""
    best = top(scores, k)
    if not best:
        return []
    rows = np.flatnonzero(scores >= best[-1][1])  # every row tied with the last one `top` kept
    return store.settle_ties([(int(r), float(scores[r])) for r in rows], passages, k)


RERANK_DEPTH = 20
"""Fused candidates a cross-encoder rescores."""


@functools.lru_cache(maxsize=2)
def load_cross_encoder(path: str):
    """A sentence-transformers CrossEncoder from a local folder, loaded once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import CrossEncoder

    try:
        return CrossEncoder(str(Path(path).expanduser()), device="cpu")
    except Exception as error:  # the library raises many kinds; all mean "cannot load"
        raise ModelError(
            f"cannot load cross-encoder {path!r} ({type(error).__name__}: {error}); set RAG_CROSS_ENCODER "
            f"to a local sentence-transformers CrossEncoder folder, or leave it empty to skip this stage"
        ) from None


def rerank(query: str, hits: list[Hit], cross_encoder) -> list[Hit]:
    """Hits reordered by the cross-encoder's score of (query, passage); the score becomes the hit's."""
    if not hits:
        return hits
    scores = cross_encoder.predict([(query, hit.passage.text) for hit in hits], show_progress_bar=False)
    order = sorted(range(len(hits)), key=lambda i: (-float(scores[i]), i))
    return [replace(hits[i], score=float(scores[i])) for i in order]

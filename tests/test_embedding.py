"""The real model in both precisions: same vectors to within bfloat16 rounding, one load per process."""

from __future__ import annotations

import numpy as np
import pytest

from rag.config import DEFAULT_MODEL
from rag.embedding import SentenceTransformerEmbedder, load_embedder, resolve_precision

TEXTS = [
    "When did the Russian military operation in Syria start?",
    "The operation began on 30 September 2015 at the request of the Syrian government.",
    "Mitochondria are the powerhouse of the cell, producing most of its ATP.",
    "x",
]


@pytest.fixture(scope="module")
def both():
    """The bundled model loaded once in float32 and once in bfloat16."""
    return SentenceTransformerEmbedder(DEFAULT_MODEL, "float32"), SentenceTransformerEmbedder(DEFAULT_MODEL, "bfloat16")


def test_bfloat16_vectors_agree_with_float32(both):
    float32, bfloat16 = both
    a, b = float32.encode(TEXTS), bfloat16.encode(TEXTS)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    agreement = (a * b).sum(axis=1)
    assert agreement.min() > 0.999
    assert not np.array_equal(a, b)  # the bfloat16 path really ran


def test_bfloat16_keeps_the_ranking(both):
    float32, bfloat16 = both
    rankings = [np.argsort(-(e.encode(TEXTS[1:]) @ e.encode(TEXTS[:1])[0])).tolist() for e in both]
    assert rankings[0] == rankings[1]


def test_bfloat16_casts_only_the_linear_layers(both):
    import torch

    float32, bfloat16 = both
    dtypes = {type(m).__name__: m.weight.dtype for m in bfloat16.model.modules() if hasattr(m, "weight")}
    assert dtypes["Linear"] == torch.bfloat16 and dtypes["LayerNorm"] == torch.float32
    assert dtypes["Embedding"] == torch.float32
    assert {m.weight.dtype for m in float32.model.modules() if hasattr(m, "weight")} == {torch.float32}


def test_precision_is_named_and_explicit_choices_are_kept():
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("bfloat16") == "bfloat16"
    assert resolve_precision("auto") in ("float32", "bfloat16")


def test_auto_follows_the_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert resolve_precision("auto") == "float32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("auto") == "bfloat16"


def test_load_embedder_reads_rag_precision_and_loads_once(monkeypatch):
    monkeypatch.setenv("RAG_PRECISION", "float32")
    first = load_embedder(DEFAULT_MODEL)
    assert first.precision == "float32" and load_embedder(DEFAULT_MODEL) is first


def test_bad_rag_precision_stops_loading_with_its_fix(monkeypatch):
    from rag.errors import ConfigError

    monkeypatch.setenv("RAG_PRECISION", "half")
    with pytest.raises(ConfigError, match="RAG_PRECISION"):
        load_embedder(DEFAULT_MODEL)


def test_token_counts_match_the_tokenizer_without_truncation(real_embedder):
    texts = TEXTS + ["Naïve café — “quoted” ünïcödé 東京 🙂", "word " * 700, ""]
    wrapper = real_embedder.model.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    counts = real_embedder.count_tokens(texts)
    assert counts == [len(ids) for ids in wrapper]
    assert counts[-2] == 700 and counts[-1] == 0  # past the 256-token window: counted, not cut

"""The real model in each arithmetic: bfloat16 and int8 vectors agree with float32; `auto` follows the CPU flags."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SEED

from rag.config import DEFAULT_MODEL
from rag.embed.batching import plan_batches
from rag.embed.embedder import SentenceEmbedder, load_embedder

TEXTS = [
    "When did the Russian military operation in Syria start?",
    "The operation began on 30 September 2015 at the request of the Syrian government.",
    "Mitochondria are the powerhouse of the cell, producing most of its ATP.",
    "x",
]


@pytest.fixture(scope="module")
def both():
    """The bundled model loaded once in float32 and once in bfloat16."""
    return SentenceEmbedder(DEFAULT_MODEL, "float32"), SentenceEmbedder(DEFAULT_MODEL, "bfloat16")


@pytest.mark.slow
def test_bfloat16_vectors_agree_with_float32(both):
    float32, bfloat16 = both
    a, b = float32.encode(TEXTS), bfloat16.encode(TEXTS)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    agreement = (a * b).sum(axis=1)
    assert agreement.min() > 0.999
    assert not np.array_equal(a, b)  # the bfloat16 path really ran


@pytest.fixture(scope="module")
def int8(both):
    """The bundled model with int8 linear layers."""
    return SentenceEmbedder(DEFAULT_MODEL, "int8")


@pytest.fixture(scope="module")
def seed_passages(both):
    """Every passage of the seed news article, as rag cuts it."""
    from rag.ingest.chunking import passages_of
    from rag.types import Document

    document = Document(SEED.name, SEED, SEED.read_text(encoding="utf-8"), "")
    return [p.text for p in passages_of(document, both[0].count_tokens, both[0].max_tokens - 2, 1)]


@pytest.mark.slow
def test_int8_vectors_agree_with_float32_on_real_passages(both, int8, seed_passages):
    float32 = both[0]
    texts = seed_passages + TEXTS
    a, b = float32.encode(texts), int8.encode(texts)
    assert len(seed_passages) >= 5 and a.shape == b.shape and b.dtype == np.float32
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    agreement = (a * b).sum(axis=1)
    assert TEXTS[-1] == "x" and agreement[:-1].min() >= 0.99  # every real passage and sentence
    assert agreement[-1] >= 0.98  # a one-letter text, the outlier channels' worst case: 0.987
    assert agreement.min() < 0.9999  # the int8 path really ran: closer than bfloat16 would be suspicious
    again = SentenceEmbedder(DEFAULT_MODEL, "int8")  # fixed calibration: every load is the same model
    assert np.array_equal(again.encode(texts), b)


@pytest.mark.slow
def test_int8_keeps_the_ranking_of_real_passages(both, int8, seed_passages):
    question = ["When did the Russian military operation in Syria start?"]
    rankings = [np.argsort(-(e.encode(seed_passages) @ e.encode(question)[0]))[:3].tolist() for e in (both[0], int8)]
    assert rankings[0][0] == rankings[1][0] and set(rankings[0]) == set(rankings[1])


@pytest.mark.slow
def test_int8_quantizes_every_linear_layer_but_the_outlier_channels(int8):
    import torch

    layers = {path: type(m).__module__ for path, m in int8.model.named_modules() if type(m).__name__ == "Linear"}
    int8_layers = {path for path, kind in layers.items() if "quantized.dynamic" in kind}
    assert any(".attention.self.query" in path for path in int8_layers)
    assert any(".intermediate.dense" in path for path in int8_layers)
    assert [path for path, m in int8.model.named_modules() if type(m) is torch.nn.Linear] == []  # none left float32
    outputs = [m for path, m in int8.model.named_modules() if path.endswith("layer.0.output.dense")]
    assert outputs[0].outlier_weight.shape == (384, 8) and outputs[0].outlier_weight.dtype == torch.float32
    assert {m.weight.dtype for m in int8.model.modules() if isinstance(m, torch.nn.LayerNorm)} == {torch.float32}
    assert int8.precision == "int8"


@pytest.mark.slow
def test_the_former_int8_recipe_keeps_the_feed_forward_outputs_float32_and_agrees(both, seed_passages):
    from rag.embed.int8 import Int8Recipe

    former = SentenceEmbedder(DEFAULT_MODEL, "int8", Int8Recipe(ffn_output="float32"))
    layers = {path: type(m).__module__ for path, m in former.model.named_modules() if type(m).__name__ == "Linear"}
    float32_layers = {path for path, kind in layers.items() if kind == "torch.nn.modules.linear"}
    assert float32_layers and all(
        path.endswith(".output.dense") and ".attention." not in path for path in float32_layers
    )
    agreement = (both[0].encode(seed_passages + TEXTS) * former.encode(seed_passages + TEXTS)).sum(axis=1)
    assert agreement.min() >= 0.99


@pytest.mark.slow
def test_bfloat16_keeps_the_ranking(both):
    float32, bfloat16 = both
    rankings = [np.argsort(-(e.encode(TEXTS[1:]) @ e.encode(TEXTS[:1])[0])).tolist() for e in both]
    assert rankings[0] == rankings[1]


@pytest.mark.slow
def test_bfloat16_casts_only_the_linear_layers(both):
    import torch

    float32, bfloat16 = both
    linears = [m for m in bfloat16.model.modules() if type(m).__name__ in ("Linear", "PackedLinear")]
    assert linears and all(m.bias.dtype == torch.bfloat16 for m in linears)  # packed, or cast where oneDNN cannot
    assert all(m.weight.dtype == torch.bfloat16 for m in linears if isinstance(m, torch.nn.Linear))
    dtypes = {type(m).__name__: m.weight.dtype for m in bfloat16.model.modules() if hasattr(m, "weight")}
    assert dtypes["LayerNorm"] == torch.float32 and dtypes["Embedding"] == torch.float32
    assert {m.weight.dtype for m in float32.model.modules() if hasattr(m, "weight")} == {torch.float32}


@pytest.mark.slow
def test_load_embedder_reads_rag_precision_and_loads_once(monkeypatch):
    monkeypatch.setenv("RAG_PRECISION", "float32")
    first = load_embedder(DEFAULT_MODEL)
    assert first.precision == "float32" and load_embedder(DEFAULT_MODEL) is first


@pytest.mark.slow
def test_load_embedder_takes_the_precision_it_is_given(monkeypatch):
    monkeypatch.setenv("RAG_PRECISION", "bfloat16")
    assert load_embedder(DEFAULT_MODEL, "float32").precision == "float32"


@pytest.mark.slow
def test_token_counts_match_the_tokenizer_without_truncation(real_embedder):
    texts = TEXTS + ["Naïve café — “quoted” ünïcödé 東京 🙂", "word " * 700, ""]
    from transformers import AutoTokenizer

    from rag.embed.embedder import resolve_model

    wrapper = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))(
        texts, add_special_tokens=False, truncation=False
    )["input_ids"]
    counts = real_embedder.count_tokens(texts)
    assert counts == [len(ids) for ids in wrapper]
    assert counts[-2] == 700 and counts[-1] == 0  # past the 256-token window: counted, not cut


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "int8"])
def test_rags_own_encoder_gives_the_vectors_of_sentence_transformers_bit_for_bit(
    both, int8, seed_passages, precision, monkeypatch
):
    """The bundled model runs in rag.embed.bert, without importing sentence-transformers; the library itself, running
    the same model in the same arithmetic (int8: calibrated on its own), is the reference: its own `encode` text by
    text, and rag's batches (padded and not) through both."""
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.embed.bert import BertEncoder

    embedder = {"float32": both[0], "bfloat16": both[1], "int8": int8}[precision]
    library = SentenceEmbedder(DEFAULT_MODEL, precision, library=True)
    assert isinstance(embedder.model, BertEncoder) and isinstance(library.model, SentenceTransformer)
    texts = (
        seed_passages + TEXTS + ["  spaces around  ", "Naïve café — “quoted” 東京", "word " * 400]
    )  # stripped; cut at 256
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one worker: the call's own thread
    try:
        with library.arithmetic():
            theirs = [library.model.encode([text], normalize_embeddings=True, convert_to_numpy=True) for text in texts]
        monkeypatch.setattr(embedder.model, "encode", lambda *a, **k: pytest.fail("a text went through encode"))
        mine = [embedder.encode([text]) for text in texts]
        batched = (embedder.encode(texts, batch_size=64), library.encode(texts, batch_size=64))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(np.vstack(mine), np.vstack(theirs))
    np.testing.assert_array_equal(*batched)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_batches_shared_among_worker_threads_give_the_same_vectors(both, int8, seed_passages, precision):
    import torch

    embedder = both[0] if precision == "float32" else int8
    texts = (seed_passages + TEXTS) * 3  # several batches of 4, of unequal lengths
    threads = torch.get_num_threads()
    embedder.workers = 1
    torch.set_num_threads(1)  # FBGEMM's int8 results depend on the thread count (by ~0.004): compare like with like
    try:
        alone = embedder.encode(texts, batch_size=4)
        torch.set_num_threads(threads)
        embedder.workers = 3
        shared = embedder.encode(texts, batch_size=4)
    finally:
        torch.set_num_threads(threads)
        embedder.workers = 0
    assert len(texts) > 3 * 4
    np.testing.assert_array_equal(shared, alone)  # the same batches, each on one thread: the same vectors
    assert torch.get_num_threads() == threads  # the caller's threads are given back


@pytest.mark.slow
def test_a_failing_batch_fails_the_whole_call_and_gives_the_threads_back(both, monkeypatch):
    import torch

    float32 = both[0]
    threads, calls = torch.get_num_threads(), []

    def forward(texts):
        calls.append(len(texts))
        if len(calls) == 2:
            raise MemoryError("out of memory in batch 2")
        return np.zeros((len(texts), float32.dimension), dtype=np.float32)

    monkeypatch.setattr(float32, "_forward", forward)
    monkeypatch.setattr(float32, "workers", 2)
    with pytest.raises(MemoryError, match="batch 2"):
        float32.encode(TEXTS * 20, batch_size=4)
    assert len(calls) < 20  # the other worker stopped instead of finishing the call
    assert torch.get_num_threads() == threads


@pytest.mark.slow
def test_questions_embedded_while_a_build_shares_its_batches_are_unchanged(both, seed_passages):
    import threading

    float32 = both[0]
    question = TEXTS[0]
    expected = float32.encode([question])
    answers, failures = [], []

    def ask():
        try:
            for _ in range(10):
                answers.append(float32.encode([question]))
        except Exception as error:  # noqa: BLE001 - the test reports it
            failures.append(error)

    asker = threading.Thread(target=ask)
    float32.workers = 2
    try:
        asker.start()
        float32.encode(seed_passages * 4, batch_size=4)
        asker.join(timeout=120)
    finally:
        float32.workers = 0
    assert not failures and len(answers) == 10
    for vector in answers:
        np.testing.assert_allclose(vector, expected, atol=1e-6)


@pytest.mark.slow
def test_shared_batches_count_on_one_progress_bar_in_a_terminal(both, monkeypatch):
    import sys

    import rag.embed.embedder

    float32, counted = both[0], []

    class Bar:
        def update(self, n):
            counted.append(n)

        def close(self):
            counted.append("closed")

    monkeypatch.setattr(rag.embed.embedder, "_progress_bar", lambda total: counted.append(total) or Bar())
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(float32, "_forward", lambda texts: np.zeros((len(texts), float32.dimension), dtype=np.float32))
    monkeypatch.setattr(float32, "workers", 2)
    float32.encode(TEXTS * 5, batch_size=4, progress=True)
    batches = len(plan_batches(float32.fed_tokens(TEXTS * 5), 4))
    assert batches > 2
    assert counted == [batches] + [1] * batches + ["closed"]  # each batch counted once, then the bar closed


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_batches_of_one_length_reach_the_model_unpadded_and_give_the_vectors_of_texts_alone(
    both, seed_passages, workers, monkeypatch
):
    float32 = both[0]
    texts = [passage[:cut] for passage in seed_passages for cut in (60, 120, 400)] * 4 + TEXTS
    alone = np.vstack([float32.encode([text]) for text in texts])
    fed, forward = [], float32._forward

    def counting(batch):
        fed.append(batch)
        return forward(batch)

    monkeypatch.setattr(float32, "_forward", counting)
    monkeypatch.setattr(float32, "workers", workers)
    together = float32.encode(texts, batch_size=8)
    assert len(fed) > 2 and sum(map(len, fed)) == len(texts)
    for batch in fed:  # every length but a few TEXTS' is shared by 4 texts or more: no padding, no mask
        assert set(batch) & set(TEXTS) or len(set(float32.fed_tokens(batch))) == 1
    np.testing.assert_allclose(together, alone, atol=2e-5)  # padding and its mask change nothing either way

"""The real model in each arithmetic: bfloat16 and int8 vectors agree with float32; `auto` follows the CPU flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import SEED
from rag.embed.batching import plan_batches
from rag.config import DEFAULT_MODEL
from rag.embed.embedder import (
    SentenceTransformerEmbedder,
    build_arithmetic,
    choose_arithmetic,
    compatible,
    cpu_flags,
    load_embedder,
    query_arithmetic,
    resolve_precision,
)

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
    return SentenceTransformerEmbedder(DEFAULT_MODEL, "int8")


@pytest.fixture(scope="module")
def seed_passages(both):
    """Every passage of the seed news article, as rag cuts it."""
    from rag.build.indexer import chunk_document
    from rag.types import Document

    document = Document(SEED.name, SEED, SEED.read_text(encoding="utf-8"), "")
    return [p.text for p in chunk_document(document, both[0], 0, 1)]


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
    again = SentenceTransformerEmbedder(DEFAULT_MODEL, "int8")  # fixed calibration: every load is the same model
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
    from rag.embed.embedder import Int8Recipe

    former = SentenceTransformerEmbedder(DEFAULT_MODEL, "int8", Int8Recipe(ffn_output="float32"))
    layers = {path: type(m).__module__ for path, m in former.model.named_modules() if type(m).__name__ == "Linear"}
    float32_layers = {path for path, kind in layers.items() if kind == "torch.nn.modules.linear"}
    assert float32_layers and all(path.endswith(".output.dense") and ".attention." not in path for path in float32_layers)
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


def test_a_packed_bfloat16_layer_computes_what_a_bfloat16_linear_layer_does():
    import copy

    import torch

    from rag.embed.embedder import bfloat16_linears

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384))
    plain = copy.deepcopy(model)
    plain[0].to(torch.bfloat16), plain[2].to(torch.bfloat16)
    bfloat16_linears(model)
    if any(isinstance(m, torch.nn.Linear) for m in model):
        pytest.skip("oneDNN cannot pack bfloat16 on this CPU: the layers were cast instead")
    for rows in (1, 7, 150):  # a question's tokens to a build's batch, 2-D and 3-D
        x = torch.randn(rows, 384)
        with torch.inference_mode():  # equal but for an accumulation order now and then: one bfloat16 rounding
            packed, cast = model(x).float(), plain(x.bfloat16()).float()
            torch.testing.assert_close(packed, cast, rtol=2 ** -7, atol=1e-3)
            assert (packed == cast).float().mean() > 0.99
            assert torch.equal(model(x.view(1, rows, 384)).float(), packed.view(1, rows, 384))


def test_layers_oneDNN_cannot_pack_are_cast_to_bfloat16(monkeypatch):
    import torch

    import rag.embed.embedder as embedding

    def cannot(*args):
        raise RuntimeError("no bfloat16 here")

    monkeypatch.setattr(embedding, "_packed_linear", lambda: cannot)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    embedding.bfloat16_linears(model)
    assert isinstance(model[0], torch.nn.Linear) and model[0].weight.dtype == torch.bfloat16


def test_precision_is_named_and_explicit_choices_are_kept():
    for asked in ("float32", "bfloat16", "int8"):
        assert resolve_precision(asked) == asked
        assert choose_arithmetic(asked, set()).describe() == f"{asked}, set by RAG_PRECISION"
    assert resolve_precision("auto") in ("float32", "bfloat16", "int8")


# /proc/cpuinfo flags of real CPUs (trimmed to what matters)
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
COOPER_LAKE = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
CASCADE_LAKE = {"avx2", "avx512f", "avx512_vnni"}
EPYC_ZEN3 = {"avx2", "fma", "sse4_2"}
OLD_ATOM = {"sse4_2"}


@pytest.mark.parametrize(
    "flags, precision, reason",
    [
        (SAPPHIRE_RAPIDS, "bfloat16", "auto: bfloat16, native on this CPU (AMX, AVX512-BF16)"),
        (COOPER_LAKE, "bfloat16", "auto: bfloat16, native on this CPU (AVX512-BF16)"),
        (CASCADE_LAKE, "int8", "auto: int8, no native bfloat16 on this CPU"),
        (EPYC_ZEN3, "int8", "auto: int8, no native bfloat16 on this CPU"),
        (OLD_ATOM, "float32", "auto: float32, no native bfloat16 and no AVX2 for int8 on this CPU"),
        (set(), "float32", "auto: float32, no native bfloat16 and no AVX2 for int8 on this CPU"),
    ],
)
def test_auto_chooses_by_the_cpu_flags(flags, precision, reason):
    chosen = choose_arithmetic("auto", flags)
    assert (chosen.precision, chosen.describe()) == (precision, reason)
    assert resolve_precision("auto", flags) == precision


def test_cpu_flags_are_read_from_cpuinfo_and_onednn_limits_take_bfloat16_away(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16 amx_tile\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16 amx_tile\n")
    assert cpu_flags(cpuinfo, {}) == {"fpu", "avx2", "avx512_bf16", "amx_bf16", "amx_tile"}
    limited = cpu_flags(cpuinfo, {"ONEDNN_MAX_CPU_ISA": "avx2"})
    assert limited == {"fpu", "avx2", "amx_tile"} and choose_arithmetic("auto", limited).precision == "int8"
    assert cpu_flags(cpuinfo, {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"}) == cpu_flags(cpuinfo, {})
    assert cpu_flags(tmp_path / "missing", {}) == frozenset()


def test_only_float32_and_bfloat16_vectors_share_an_index():
    assert compatible("float32", "bfloat16") and compatible("bfloat16", "float32") and compatible("int8", "int8")
    assert not compatible("int8", "float32") and not compatible("bfloat16", "int8")


@pytest.mark.parametrize(
    "asked, indexed, flags, expected",
    [
        ("auto", None, EPYC_ZEN3, "int8"),
        ("auto", "int8", SAPPHIRE_RAPIDS, "int8"),  # auto extends an index in its own arithmetic
        ("auto", "bfloat16", EPYC_ZEN3, "float32"),  # ... or a compatible one this CPU runs fast
        ("auto", "float32", SAPPHIRE_RAPIDS, "bfloat16"),
        ("float32", "int8", EPYC_ZEN3, "float32"),  # an explicit choice is kept (the index is rebuilt)
    ],
)
def test_a_build_continues_an_index_in_its_arithmetic_unless_told_otherwise(asked, indexed, flags, expected):
    assert build_arithmetic(asked, indexed, flags).precision == expected


@pytest.mark.parametrize(
    "indexed, flags, expected",
    [
        ("int8", SAPPHIRE_RAPIDS, "int8"),
        ("float32", SAPPHIRE_RAPIDS, "float32"),
        ("bfloat16", SAPPHIRE_RAPIDS, "bfloat16"),
        ("bfloat16", EPYC_ZEN3, "float32"),  # proven compatible: see test_bfloat16_vectors_agree_with_float32
    ],
)
def test_questions_are_embedded_in_the_index_arithmetic(indexed, flags, expected):
    assert query_arithmetic(indexed, flags).precision == expected


@pytest.mark.slow
def test_load_embedder_reads_rag_precision_and_loads_once(monkeypatch):
    monkeypatch.setenv("RAG_PRECISION", "float32")
    first = load_embedder(DEFAULT_MODEL)
    assert first.precision == "float32" and load_embedder(DEFAULT_MODEL) is first


@pytest.mark.slow
def test_load_embedder_takes_the_precision_it_is_given(monkeypatch):
    monkeypatch.setenv("RAG_PRECISION", "bfloat16")
    assert load_embedder(DEFAULT_MODEL, "float32").precision == "float32"


def test_bad_rag_precision_stops_loading_with_its_fix(monkeypatch):
    from rag.errors import ConfigError

    monkeypatch.setenv("RAG_PRECISION", "half")
    with pytest.raises(ConfigError, match="RAG_PRECISION"):
        load_embedder(DEFAULT_MODEL)


@pytest.mark.slow
def test_token_counts_match_the_tokenizer_without_truncation(real_embedder):
    texts = TEXTS + ["Naïve café — “quoted” ünïcödé 東京 🙂", "word " * 700, ""]
    from transformers import AutoTokenizer

    from rag.embed.embedder import resolve_model

    wrapper = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))(texts, add_special_tokens=False, truncation=False)["input_ids"]
    counts = real_embedder.count_tokens(texts)
    assert counts == [len(ids) for ids in wrapper]
    assert counts[-2] == 700 and counts[-1] == 0  # past the 256-token window: counted, not cut


def test_splitting_the_feed_forward_keeps_a_bert_block_the_same_function():
    import torch
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertEncoder

    from rag.embed.embedder import _smooth, _split_outliers

    torch.manual_seed(0)
    model = torch.nn.Module()
    model.encoder = BertEncoder(BertConfig(hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1))
    model.eval()
    inputs = torch.randn(3, 5, 8)
    path, intermediate = "encoder.layer.0.output.dense", "encoder.layer.0.intermediate"
    with torch.no_grad():
        before = model.encoder(inputs).last_hidden_state
        hidden = model.encoder.layer[0].intermediate(inputs)
        peaks = {path: hidden.abs().reshape(-1, 16).amax(0), f"{intermediate}.dense": inputs.abs().reshape(-1, 8).amax(0)}
        _smooth(model, [f"{intermediate}.dense"], peaks)  # the input layer is smoothed first, as in int8
        assert _split_outliers(model, [path], peaks, 3) == [path]
        main, outliers = model.encoder.layer[0].intermediate(inputs)
        assert main.shape[-1] == 13 and outliers.shape[-1] == 3
        assert torch.allclose(outliers.abs().reshape(-1, 3).amax(0).sort().values, peaks[path].topk(3).values.sort().values)
        assert torch.allclose(model.encoder(inputs).last_hidden_state, before, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "int8"])
def test_rags_own_encoder_gives_the_vectors_of_sentence_transformers_bit_for_bit(both, int8, seed_passages, precision, monkeypatch):
    """The bundled model runs in rag.embed.bert, without importing sentence-transformers; the library itself, running
    the same model in the same arithmetic (int8: calibrated on its own), is the reference: its own `encode` text by
    text, and rag's batches (padded and not) through both."""
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.embed.bert import BertEncoder

    embedder = {"float32": both[0], "bfloat16": both[1], "int8": int8}[precision]
    library = SentenceTransformerEmbedder(DEFAULT_MODEL, precision, library=True)
    assert isinstance(embedder.model, BertEncoder) and isinstance(library.model, SentenceTransformer)
    texts = seed_passages + TEXTS + ["  spaces around  ", "Naïve café — “quoted” 東京", "word " * 400]  # stripped; cut at 256
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


def test_rags_encoder_runs_only_the_models_it_reproduces(tmp_path):
    """A BERT with mean pooling, yes; any other pooling, model type or missing file goes to sentence-transformers."""
    import json
    import shutil

    from rag.embed.embedder import resolve_model
    from rag.embed.bert import supports

    bundled = Path(resolve_model(DEFAULT_MODEL))
    assert supports(bundled)
    for name, change in [
        ("cls", lambda f: _edit(f / "1_Pooling" / "config.json", pooling_mode_cls_token=True)),
        ("roberta", lambda f: _edit(f / "config.json", model_type="roberta")),
        ("relu", lambda f: _edit(f / "config.json", hidden_act="relu")),
        ("lower", lambda f: _edit(f / "sentence_bert_config.json", do_lower_case=True)),
        ("dense", lambda f: (f / "modules.json").write_text(json.dumps(
            json.loads((f / "modules.json").read_text())[:2] + [{"type": "sentence_transformers.models.Dense"}]))),
        ("no weights", lambda f: (f / "model.safetensors").unlink()),
        ("no modules", lambda f: (f / "modules.json").unlink()),
    ]:
        folder = tmp_path / name
        shutil.copytree(bundled, folder, ignore=shutil.ignore_patterns("model.safetensors"))
        (folder / "model.safetensors").symlink_to(bundled / "model.safetensors")
        assert supports(folder)
        change(folder)
        assert not supports(folder), name


def _edit(path, **changes):
    import json

    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


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
def test_batches_of_one_length_reach_the_model_unpadded_and_give_the_vectors_of_texts_alone(both, seed_passages, workers, monkeypatch):
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

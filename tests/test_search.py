"""Fusion, the order a cross-encoder imposes, and hybrid search finding exact codes."""

from __future__ import annotations

import pytest
from conftest import write_corpus
from fakes import FakeEmbedder

from rag.build.indexer import build
from rag.index.bm25 import top
from rag.search import RRF_K, Retriever, Scope, load_cross_encoder, rank_fusion, rerank, score_fusion
from rag.types import Hit, Passage


@pytest.mark.parametrize(
    "rankings, weights, expected",
    [
        ([[1, 2, 3]], None, {1: 1 / 61, 2: 1 / 62, 3: 1 / 63}),
        ([[1, 2], [2, 1]], None, {1: 1 / 61 + 1 / 62, 2: 1 / 62 + 1 / 61}),
        ([[1], [2]], [2.0, 1.0], {1: 2 / 61, 2: 1 / 61}),
        ([[], [5]], None, {5: 1 / 61}),
        ([[], []], None, {}),
    ],
)
def test_reciprocal_rank_fusion(rankings, weights, expected):
    fused = rank_fusion(rankings, k=RRF_K, weights=weights)
    assert fused.keys() == expected.keys()
    for item, score in expected.items():
        assert fused[item] == pytest.approx(score)


def test_an_item_both_retrievers_rank_beats_one_only_one_ranks_first():
    fused = rank_fusion([[7, 8], [9, 8]])
    assert max(fused, key=fused.get) == 8


@pytest.mark.parametrize(
    "cosine, bm25, weight, expected",
    [
        # BM25 is divided by its best score (8): 0.7 × cosine + 0.3 × bm25 / 8
        ({1: 0.5, 2: 0.4}, {1: 8.0, 2: 4.0}, 0.7, {1: 0.35 + 0.3, 2: 0.28 + 0.15}),
        # a dense-only candidate scores 0 on the BM25 side
        ({1: 0.5, 2: 0.9}, {1: 2.0}, 0.7, {1: 0.35 + 0.3, 2: 0.63}),
        # no BM25 match at all: the ranking is the dense one
        ({1: 0.5, 2: 0.9}, {}, 0.7, {1: 0.35, 2: 0.63}),
        ({1: 0.5, 2: 0.9}, {1: 0.0, 2: 0.0}, 0.7, {1: 0.35, 2: 0.63}),
        # the ends of the range: BM25 alone, dense alone
        ({1: 0.5, 2: 0.9}, {1: 3.0, 2: 1.0}, 0.0, {1: 1.0, 2: 1 / 3}),
        ({1: 0.5, 2: 0.9}, {1: 3.0, 2: 1.0}, 1.0, {1: 0.5, 2: 0.9}),
        ({}, {}, 0.7, {}),
    ],
)
def test_convex_fusion(cosine, bm25, weight, expected):
    fused = score_fusion(cosine, bm25, weight)
    assert fused.keys() == expected.keys()
    for item, score in expected.items():
        assert fused[item] == pytest.approx(score)


def test_convex_fusion_lets_a_strong_lexical_match_overtake_a_slightly_closer_vector():
    fused = score_fusion({1: 0.62, 2: 0.60}, {1: 1.0, 2: 9.0}, 0.7)
    assert max(fused, key=fused.get) == 2


@pytest.mark.parametrize(
    "scores, k, expected",
    [
        ([0.0, 3.0, 1.0, 2.0], 2, [(1, 3.0), (3, 2.0)]),
        ([0.0, 3.0, 1.0, 2.0], 10, [(1, 3.0), (3, 2.0), (2, 1.0)]),  # zero scores never count
        ([2.0, 2.0, 1.0], 2, [(0, 2.0), (1, 2.0)]),
        ([], 3, []),
        ([1.0], 0, []),
    ],
)
def test_top_scores(scores, k, expected):
    import numpy as np

    assert top(np.asarray(scores), k) == expected


@pytest.mark.parametrize("fusion", ["convex", "rrf"])
def test_hybrid_search_finds_an_exact_code_that_dense_search_ranks_low(make_settings, fusion):
    settings = make_settings(fusion=fusion)
    filler = {
        f"memo{i}.txt": f"Memo {i} discusses quarterly error budgets and routine maintenance windows."
        for i in range(30)
    }
    write_corpus(settings.corpus, {**filler, "codes.txt": "Fault XJ-4471 means the coolant valve is stuck."})
    fake = FakeEmbedder(dimension=8)  # a weak dense model: many collisions
    build(settings, embedder_factory=lambda name: fake)
    hybrid = Retriever(settings, embedder_factory=lambda name: fake)
    assert hybrid.search("What does XJ-4471 mean?", k=1)[0].passage.source == "codes.txt"
    assert hybrid.search("What does XJ-4471 mean?", k=1)[0].lexical > 0


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory):
    """A randomly initialised one-layer BERT cross-encoder saved as a local folder (no download)."""
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("cross-encoder")
    words = "the a of and to in is was coolant valve fault stuck means what does kettle descale weeks".split()
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *words,
        *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"],
        *"abcdefghijklmnopqrstuvwxyz0123456789-?.,",
    ]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        num_labels=1,
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CrossEncoder(str(folder), device="cpu")  # loads as a sentence-transformers CrossEncoder
    return str(folder)


def _hit(n: int, text: str, score: float) -> Hit:
    return Hit(Passage(f"f.txt#{n}", "f.txt", 0, len(text), 1, 1, text), score)


def test_cross_encoder_reorders_hits_by_its_own_scores(tiny_cross_encoder):
    model = load_cross_encoder(tiny_cross_encoder)
    hits = [
        _hit(i, text, 1.0 - i / 10)
        for i, text in enumerate(
            [
                "the valve is stuck",
                "descale the kettle",
                "what does fault mean",
                "coolant and valve",
                "a kettle of fish",
            ]
        )
    ]
    question = "what does the fault mean?"
    expected = model.predict([(question, h.passage.text) for h in hits], show_progress_bar=False)
    reranked = rerank(question, hits, model)
    assert [h.score for h in reranked] == sorted((float(s) for s in expected), reverse=True)
    assert sorted(h.passage.id for h in reranked) == sorted(h.passage.id for h in hits)


def test_retriever_uses_a_configured_cross_encoder(make_settings, tiny_cross_encoder):
    settings = make_settings(cross_encoder=tiny_cross_encoder)
    write_corpus(settings.corpus, {f"n{i}.txt": f"Note {i}: the coolant valve fault number {i}." for i in range(6)})
    fake = FakeEmbedder()
    build(settings, embedder_factory=lambda name: fake)
    hits = Retriever(settings, embedder_factory=lambda name: fake).search("coolant valve fault", k=4)
    model = load_cross_encoder(tiny_cross_encoder)
    scores = [
        float(s)
        for s in model.predict([("coolant valve fault", h.passage.text) for h in hits], show_progress_bar=False)
    ]
    assert scores == sorted(scores, reverse=True) and [h.score for h in hits] == pytest.approx(scores)


def test_a_missing_cross_encoder_folder_is_a_clear_error(tmp_path):
    from rag.errors import ModelError

    with pytest.raises(ModelError, match="RAG_CROSS_ENCODER"):
        load_cross_encoder(str(tmp_path / "nowhere"))


def test_a_rebuild_landing_mid_search_does_not_mix_versions(make_settings, tmp_path):
    """BM25-only candidates are scored against the vectors of the version the search started on."""
    fake = FakeEmbedder()
    settings = make_settings(candidates=3)
    filler = {
        f"memo{i}.txt": f"Memo {i} discusses quarterly error budgets and routine maintenance windows."
        for i in range(30)
    }
    write_corpus(settings.corpus, {**filler, "codes.txt": "Fault XJ-4471 means the coolant valve is stuck."})
    build(settings, embedder_factory=lambda name: fake)
    other = make_settings(corpus=tmp_path / "tiny", index=tmp_path / "other")
    write_corpus(other.corpus, {"tiny.txt": "A single unrelated passage."})
    build(other, embedder_factory=lambda name: fake)
    retriever = Retriever(settings, embedder_factory=lambda name: fake)
    started_on, newer = retriever.index, Retriever(other, embedder_factory=lambda name: fake).index
    started_on.search_dense = (
        lambda vector, k, sources=None: []
    )  # every candidate comes from BM25 and needs its stored vector
    question = "What does fault XJ-4471 mean for the coolant valve?"
    expected = {h.passage.id: h.dense for h in retriever.search(question, k=3)}
    scores, swapped = started_on.lexical.scores, []

    def rebuild_lands(query):  # the new version is swapped in while this search is under way
        retriever._loaded = newer
        swapped.append(query)
        return scores(query)

    started_on.lexical.scores = rebuild_lands
    retriever.refresh = lambda: False  # the search has already looked at the pointer
    got = {h.passage.id: h.dense for h in retriever.search(question, k=3)}
    assert swapped and "codes.txt#1" in expected and expected["codes.txt#1"] > 0.5
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("scores", "k", "expected"),
    [
        ({0: 0.5, 1: 0.9, 2: 0.7}, 2, [1, 2]),
        ({0: 0.5, 1: 0.5, 2: 0.5}, 2, [2, 1]),  # ties in (source, number) order: c.txt, e.txt, g.txt
        ({}, 3, []),
        ({4: 1.0}, 0, []),
        ({0: 0.3, 1: 0.8, 2: 0.8, 3: 0.1}, 3, [2, 1, 0]),
        ({5: 0.4, 6: 0.4}, 1, [6]),  # b.txt#2 before b.txt#10: numbers compare as numbers
    ],
)
def test_equal_scores_are_settled_by_source_and_passage_number_whatever_the_row_numbers(scores, k, expected):
    from rag.index.store import settle_ties

    keys = {
        0: ("g.txt", 1),
        1: ("e.txt", 1),
        2: ("c.txt", 1),
        3: ("a.txt", 1),
        4: ("b.txt", 1),
        5: ("b.txt", 10),
        6: ("b.txt", 2),
    }

    class Passages:
        def order_keys(self, rows):
            return [keys[row] for row in rows]

    assert [row for row, _ in settle_ties(list(scores.items()), Passages(), k)] == expected


# --- scope and collections ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, paths, covered, left_out",
    [
        ("", (), ["a.txt", "x/y/z.md"], []),
        ("reports", ("reports",), ["reports/q3.txt", "reports/2026/a.pdf"], ["reports2/q3.txt", "notes.md"]),
        (" reports/ , notes/plan.md ", ("reports", "notes/plan.md"), ["notes/plan.md"], ["notes/plan.md.bak"]),
        ("./, ,", (), ["anything.txt"], []),
    ],
)
def test_a_scope_names_folders_and_files(text, paths, covered, left_out):
    scope = Scope.of(text)
    assert scope.paths == paths
    assert all(scope.covers(s) for s in covered) and not any(scope.covers(s) for s in left_out)


@pytest.fixture
def scoped(make_settings):
    """Thirty strong passages about the harbour crane in `docks/`, one weaker one in `notes/`."""
    settings = make_settings(candidates=5)
    files = {f"docks/crane{n}.txt": f"The harbour crane lifts containers at dock {n} all day." for n in range(30)}
    files["notes/minutes.txt"] = "At the meeting someone mentioned the harbour crane once, then moved on to parking."
    files["other.txt"] = "Bakeries open early."
    write_corpus(settings.corpus, files)
    fake = FakeEmbedder()
    build(settings, embedder_factory=lambda name: fake)
    return settings, Retriever(settings, embedder_factory=lambda name: fake)


def test_the_scope_is_applied_inside_the_search_so_the_best_passages_in_scope_come_back(scoped):
    settings, retriever = scoped
    everywhere = retriever.search("harbour crane", k=3)
    assert all(hit.passage.source.startswith("docks/") for hit in everywhere)  # notes/ is far below the cut
    inside = retriever.search("harbour crane", k=3, scope=Scope.of("notes"))
    assert [hit.passage.source for hit in inside] == ["notes/minutes.txt"]  # a filter after the top 5 finds none
    assert retriever.search("harbour crane", k=3, scope=Scope.of("nowhere")) == []


def test_an_answer_reads_only_the_collections_it_is_given_and_names_them(scoped, make_settings, monkeypatch):
    from rag.answer.quotes import answer

    settings, docks = scoped
    docks.collection = "docks"
    other = make_settings(corpus=settings.corpus.parent / "hr", index=settings.index.parent / "hr-index", min_score=0.0)
    write_corpus(other.corpus, {"leave.txt": "Staff get thirty days of paid leave a year."})
    fake = FakeEmbedder()
    build(other, embedder_factory=lambda name: fake)
    hr = Retriever(other, embedder_factory=lambda name: fake, collection="hr")
    both = answer("How many days of paid leave do staff get?", [docks, hr], settings.replace(min_score=0.0))
    first = both.citations[0]
    assert (first.collection, first.source) == ("hr", "leave.txt")
    assert (other.corpus / first.source).read_text()[first.start : first.end] == first.quote
    assert first.key == f"hr:{first.passage_id}" and first.key in both.passages

    def untouchable(*args, **kwargs):
        raise AssertionError("a collection that was not given was read")

    monkeypatch.setattr(hr, "search", untouchable)
    monkeypatch.setattr(hr, "snapshot", untouchable)
    alone = answer("How many days of paid leave do staff get?", [docks], settings.replace(min_score=0.0))
    assert all(c.collection == "docks" for c in alone.citations)
    assert all("leave" not in hit.passage.text for hit in alone.nearest)

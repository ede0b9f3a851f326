"""An index of immutable segments: an edit writes what changed, searching spans the segments as if
they were one index, merges keep it tidy, and readers keep the version they hold."""

from __future__ import annotations

import os
import random
import threading

import numpy as np
import pytest
from conftest import TOPICS, topic_text, write_corpus

from rag.build.indexer import build
from rag.index import merge, store
from rag.index.bm25 import LexicalIndex, Postings, terms
from rag.search import Retriever

WORDS = (
    "harbour ferry glacier orchard lantern copper meadow falcon quarry violin tundra spice comet "
    "canyon walrus pepper bronze delta marble osprey cobalt saffron ridge willow"
).split()


def article(seed: int, paragraphs: int = 3) -> str:
    rng = random.Random(seed)
    return "\n\n".join(
        " ".join(
            f"The {rng.choice(WORDS)} {rng.choice(WORDS)} saw {rng.choice(WORDS)} number {rng.randint(1, 99)}."
            for _ in range(4)
        )
        for _ in range(paragraphs)
    )


def ids_and_scores(settings, fake, questions, k=10):
    retriever = Retriever(settings, embedder_factory=lambda name: fake)
    return {
        q: [(h.passage.id, round(h.score, 5), round(h.lexical, 4)) for h in retriever.search(q, k=k)] for q in questions
    }


QUESTIONS = [
    "harbour ferry",
    "glacier orchard lantern",
    "copper meadow number 7",
    "falcon quarry violin",
    "walrus pepper",
    "saffron ridge willow number 42",
    "comet canyon",
    "osprey cobalt delta",
]


def test_an_edited_index_answers_exactly_as_a_fresh_build_of_the_same_corpus(make_settings, fake):
    edited = make_settings(merge_factor=3)
    write_corpus(edited.corpus, {f"doc{i:02}.txt": article(i) for i in range(12)})
    build(edited, embedder_factory=lambda name: fake)
    rng = random.Random(5)
    for step in range(14):  # changes, additions, removals and renames, merged as they pile up
        name = f"doc{rng.randrange(16):02}.txt"
        path = edited.corpus / name
        if step % 5 == 4 and path.exists():
            path.rename(edited.corpus / f"moved{step}.txt")
        elif step % 4 == 3 and path.exists():
            path.unlink()
        else:
            path.write_text(article(100 + step))
        build(edited, embedder_factory=lambda name: fake)
    loaded = store.load(edited.index)
    assert len(loaded.parts) > 1 and any(p.dead is not None for p in loaded.parts)  # really segmented
    fresh = make_settings(index=edited.index.parent / "fresh")
    build(fresh, full=True, embedder_factory=lambda name: fake)
    assert len(store.load(fresh.index).parts) == 1
    assert ids_and_scores(edited, fake, QUESTIONS) == ids_and_scores(fresh, fake, QUESTIONS)


def test_bm25_over_segments_equals_bm25_over_one_index_and_the_reference_implementation():
    bm25s = pytest.importorskip("bm25s")
    texts = [article(i, paragraphs=1) for i in range(60)]
    whole = Postings.build(texts)
    halves = [Postings.build(texts[:25]), Postings.build(texts[25:])]

    class Whole:
        def __init__(self, postings, base):
            self.postings, self.base, self.dead = postings, base, None
            self.live_length = int(postings.lengths.sum())

        def global_rows(self, rows):
            return self.base + np.asarray(rows)

    one = LexicalIndex([Whole(whole, 0)], 60)
    two = LexicalIndex([Whole(halves[0], 0), Whole(halves[1], 25)], 60)
    reference = bm25s.BM25()
    reference.index([terms(t) for t in texts], show_progress=False)
    for question in QUESTIONS:
        assert np.allclose(one.scores(question), two.scores(question), rtol=1e-6, atol=1e-7)
        known = [t for t in terms(question) if t in reference.vocab_dict]
        assert np.allclose(one.scores(question), reference.get_scores(known), rtol=1e-5, atol=1e-6)


def test_a_deleted_passage_counts_for_nothing_in_bm25_statistics(make_settings, fake):
    """Document frequency and average length come from live passages only."""
    settings = make_settings(merge_factor=100)
    write_corpus(
        settings.corpus,
        {
            "a.txt": "Walrus pepper.",
            "b.txt": "Walrus saffron ridge.",
            "c.txt": "Comet canyon.",
            **{f"{t}.txt": topic_text(t) for t in TOPICS},
        },
    )  # b is under 30 % of the segment
    build(settings, embedder_factory=lambda name: fake)
    (settings.corpus / "b.txt").write_text("Osprey cobalt.")
    build(settings, embedder_factory=lambda name: fake)
    edited = store.load(settings.index)
    assert any(p.dead is not None for p in edited.parts)
    fresh = make_settings(index=settings.index.parent / "fresh")
    build(fresh, full=True, embedder_factory=lambda name: fake)
    assert ids_and_scores(settings, fake, ["walrus", "osprey"]) == ids_and_scores(fresh, fake, ["walrus", "osprey"])


def test_an_edit_writes_one_small_segment_and_leaves_the_others_untouched(make_settings, fake):
    settings = make_settings()
    write_corpus(settings.corpus, {f"{t}.txt": topic_text(t, 30) for t in TOPICS})
    build(settings, embedder_factory=lambda name: fake)
    first = store.load(settings.index)
    big = first.parts[0].segment.folder
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in big.rglob("*") if p.is_file()}
    first.release()
    (settings.corpus / f"{TOPICS[0]}.txt").write_text(topic_text(TOPICS[0], 30) + "\n\nOne more line.")
    summary = build(settings, embedder_factory=lambda name: fake)
    assert summary.files_changed == 1 and summary.segments == 2
    after = store.load(settings.index)
    assert [p.segment.folder for p in after.parts][0] == big
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in big.rglob("*") if p.is_file()} == before
    new = after.parts[1].segment
    assert set(new.info.files) == {f"{TOPICS[0]}.txt"}
    assert after.parts[0].deleted == (f"{TOPICS[0]}.txt",)
    written = sum(p.stat().st_size for p in new.folder.rglob("*") if p.is_file())
    assert written < sum(p.stat().st_size for p in big.rglob("*") if p.is_file()) / 3


def test_unchanged_files_are_not_read_again(make_settings, fake, monkeypatch):
    from rag.ingest import corpus

    settings = make_settings()
    write_corpus(settings.corpus, {f"{t}.txt": topic_text(t) for t in TOPICS})
    old = 10**9 * 1_600_000_000  # modified long before any scan: not "racily clean"
    for path in settings.corpus.iterdir():
        os.utime(path, ns=(old, old))
    build(settings, embedder_factory=lambda name: fake)
    read = []
    original = corpus.read_file
    monkeypatch.setattr(corpus, "read_file", lambda path, *a, **k: (read.append(path.name), original(path, *a, **k))[1])
    (settings.corpus / "glacier.txt").write_text("The glacier moved.")
    summary = build(settings, embedder_factory=lambda name: fake)
    assert read == ["glacier.txt"] and summary.files_changed == 1


def test_a_file_changed_within_the_timestamp_tick_of_its_scan_is_read_again(make_settings, fake):
    """Same size, same mtime, different bytes: caught because it was recorded "racily clean"."""
    settings = make_settings()
    path = settings.corpus / "note.txt"
    path.write_text("The walrus sleeps at noon.")
    build(settings, embedder_factory=lambda name: fake)
    stamp = path.stat().st_mtime_ns
    path.write_text("The osprey sleeps at noon.")  # same length
    os.utime(path, ns=(stamp, stamp))
    summary = build(settings, embedder_factory=lambda name: fake)
    assert summary.files_changed == 1
    assert "osprey" in store.load(settings.index).passages[0].text


@pytest.mark.parametrize(("live", "tier"), [(0, 0), (1, 0), (999, 0), (1000, 1), (9999, 1), (10_000, 2), (10**6, 4)])
def test_size_tiers(live, tier):
    assert merge.tier(live, 10) == tier


def test_merging_gathers_a_full_tier_and_rewrites_a_mostly_deleted_segment(make_settings, fake):
    settings = make_settings(merge_factor=4)
    write_corpus(settings.corpus, {"base.txt": article(0, 40)})
    build(settings, embedder_factory=lambda name: fake)
    merges = []
    for i in range(4):
        write_corpus(settings.corpus, {f"new{i}.txt": article(10 + i)})
        merges.append(build(settings, embedder_factory=lambda name: fake).merges)
    assert merges == [0, 0, 1, 0]  # the base and three small ones make four in tier 0; then one merged
    loaded = store.load(settings.index)
    assert len(loaded.parts) == 2 and sum(p.live for p in loaded.parts) == loaded.manifest.passages
    loaded.release()
    (settings.corpus / "base.txt").unlink()
    summary = build(settings, embedder_factory=lambda name: fake)
    loaded = store.load(settings.index)
    assert summary.merges == 1 and all(p.dead is None for p in loaded.parts)  # mostly deleted: rewritten
    assert sorted(loaded.manifest.files) == [f"new{i}.txt" for i in range(4)]


def test_a_reader_keeps_its_version_until_it_lets_go(make_settings, fake):
    settings = make_settings()
    write_corpus(settings.corpus, {f"{t}.txt": topic_text(t) for t in TOPICS})
    build(settings, embedder_factory=lambda name: fake)
    held = store.load(settings.index)
    old_segment = held.parts[0].segment.folder
    build(settings, full=True, embedder_factory=lambda name: fake)
    build(settings, full=True, embedder_factory=lambda name: fake)
    assert held.folder.is_dir() and old_segment.is_dir()  # still in use
    assert held.passages[0].text and held.search_dense(fake.encode(["glacier"])[0], 1)
    held.release()
    build(settings, full=True, embedder_factory=lambda name: fake)
    assert not held.folder.exists() and not old_segment.exists()
    assert len(list((settings.index / store.SEGMENTS).iterdir())) == 1


def test_questions_never_fail_while_edits_and_merges_run(make_settings, fake):
    settings = make_settings(merge_factor=2)
    write_corpus(settings.corpus, {f"doc{i}.txt": article(i) for i in range(6)})
    build(settings, embedder_factory=lambda name: fake)
    retriever = Retriever(settings, embedder_factory=lambda name: fake)
    stop, errors, answered = threading.Event(), [], []

    def ask():
        while not stop.is_set():
            try:
                answered.append(len(retriever.search("harbour ferry walrus", k=5)))
            except Exception as error:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(error))

    askers = [threading.Thread(target=ask) for _ in range(2)]
    for thread in askers:
        thread.start()
    merges = 0
    try:
        for i in range(8):
            (settings.corpus / f"doc{i % 6}.txt").write_text(article(50 + i))
            merges += build(settings, embedder_factory=lambda name: fake).merges
    finally:
        stop.set()
        for thread in askers:
            thread.join()
    assert errors == [] and merges > 0 and len(answered) > 0 and all(n == 5 for n in answered)


def test_status_shows_segments_deletions_and_bytes(make_settings, fake):
    from rag.build.status import index_status

    settings = make_settings(merge_factor=100)
    write_corpus(settings.corpus, {f"{t}.txt": topic_text(t) for t in TOPICS})
    build(settings, embedder_factory=lambda name: fake)
    (settings.corpus / f"{TOPICS[0]}.txt").write_text("Short now.")
    build(settings, embedder_factory=lambda name: fake)
    info = index_status(settings)
    assert len(info["segments"]) == 2 and info["deleted"] == info["segments"][0]["deleted"] > 0
    assert info["segments"][1] | {"name": "", "bytes": 0} == {
        "name": "",
        "passages": 1,
        "deleted": 0,
        "index_type": "flat-fp16",
        "bytes": 0,
    }
    assert info["bytes_on_disk"] >= sum(s["bytes"] for s in info["segments"]) > 0


def test_a_converted_file_keeps_its_text_of_record_through_a_rename_and_merges(make_settings, fake):
    import writers

    from rag.answer.quotes import answer
    from rag.ingest import readers

    settings = make_settings(merge_factor=2, min_score=0.0)
    writers.text_pdf(settings.corpus / "ferries.pdf", [["The harbour ferries now run at noon as well."]])
    write_corpus(settings.corpus, {"a.txt": article(1)})
    build(settings, embedder_factory=lambda name: fake)
    (settings.corpus / "ferries.pdf").rename(settings.corpus / "moved.pdf")
    renamed = build(settings, embedder_factory=lambda name: fake)
    assert renamed.files_renamed == 1 and renamed.passages_embedded == 0 and renamed.merges == 1
    write_corpus(settings.corpus, {"b.txt": article(2)})
    build(settings, embedder_factory=lambda name: fake)
    loaded = store.load(settings.index)
    assert len(loaded.parts) == 1 and "ferries.pdf" not in loaded.manifest.files
    record = readers.load_record(loaded.texts_folder("moved.pdf"), loaded.manifest.files["moved.pdf"].sha256)
    assert "ferries now run at noon" in record.text
    result = answer(
        "When do the harbour ferries run?", Retriever(settings, embedder_factory=lambda name: fake), settings
    )
    cited = [c for c in result.citations if c.source == "moved.pdf"]
    assert cited and record.text[cited[0].start : cited[0].end] == cited[0].quote and cited[0].page == 1


def _segment_of(tmp_path, vectors):
    from rag.index.segment import Segment, write_segment
    from rag.types import Passage

    passages = [
        Passage(f"f.txt#{i}", "f.txt", 10 * i, 10 * i + 9, i + 1, i + 1, f"passage {i:05}") for i in range(len(vectors))
    ]
    info = write_segment(tmp_path, passages, vectors)
    return Segment(tmp_path / info.name)


def _unit(rows, seed=0, dimension=64):
    vectors = np.random.default_rng(seed).standard_normal((rows, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_exact_search_scans_half_precision_and_returns_float32_cosines(tmp_path):
    vectors = _unit(3000)
    segment = _segment_of(tmp_path, vectors)
    assert segment.info.index_type == "flat-fp16"
    for query in _unit(20, seed=1):
        found = segment.search(query, 10, None)
        exact = vectors @ query
        truth = np.argsort(-exact, kind="stable")[:10]
        assert [r for r, _ in found] == truth.tolist()  # the same rows, best first
        np.testing.assert_allclose(
            [s for _, s in found], exact[truth], rtol=0, atol=1e-6
        )  # float32's, not fp16's (~1e-4 off)
    live = np.zeros((3000 + 7) // 8, dtype=np.uint8)
    live[:100] = 0xFF  # rows 0..799 only
    assert all(r < 800 for r, _ in segment.search(_unit(1, seed=2)[0], 10, live))


def test_a_search_gives_the_asking_thread_its_own_thread_count_back(tmp_path):
    """FAISS and torch share one OpenMP runtime: a question's one-thread search must not leave the thread's later
    torch work on one core (a build after a question in the same thread embedded 1.7x slower on 2 cores)."""
    import faiss
    import torch

    segment = _segment_of(tmp_path, _unit(300))
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(3)  # not SEARCH_THREADS, so that this can fail on any machine
    try:
        torch_threads = torch.get_num_threads()  # 3 where torch shares FAISS's OpenMP runtime
        assert segment.search(_unit(1, seed=4)[0], 5, None)
        assert faiss.omp_get_max_threads() == 3
        assert torch.get_num_threads() == torch_threads
    finally:
        faiss.omp_set_num_threads(before)

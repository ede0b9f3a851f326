"""Incremental, crash-safe builds, with the fake embedder counting what gets embedded."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from conftest import DAMAGES, TOPICS, damage_version, newest_segment, topic_text, write_corpus
from fakes import FakeEmbedder

from rag.build.indexer import build, is_stale
from rag.build.lock import build_lock
from rag.embed.arithmetic import vector_recipe
from rag.errors import BuildLocked, IndexDamaged, IndexMissing
from rag.index import segment, store
from rag.index.manifest import FORMAT_VERSION
from rag.index.vectors import VectorRows
from rag.search import Retriever


@pytest.fixture
def corpus_settings(make_settings):
    settings = make_settings()
    write_corpus(settings.corpus, {f"{t}.txt": topic_text(t) for t in TOPICS})
    return settings


def counting_factory(fake: FakeEmbedder):
    calls = []

    def factory(name):
        calls.append(name)
        return fake

    factory.calls = calls
    return factory


def sources_of(settings, fake, query, k=50):
    retriever = Retriever(settings, embedder_factory=lambda name: fake)
    return {hit.passage.source for hit in retriever.search(query, k=k)}


def test_first_build_embeds_everything_then_nothing_changed_does_no_model_work(corpus_settings, fake):
    first = build(corpus_settings, embedder_factory=lambda name: fake)
    assert first.files_added == len(TOPICS) and first.full
    assert first.passages_embedded == first.passages == len(fake.embedded) > len(TOPICS)

    factory = counting_factory(FakeEmbedder())
    second = build(corpus_settings, embedder_factory=factory)
    assert factory.calls == []
    assert second.files_unchanged == len(TOPICS)
    assert (second.passages_embedded, second.version) == (0, "")
    assert second.line().startswith("index up to date")
    assert not is_stale(corpus_settings)


def test_editing_one_file_among_many_embeds_only_its_changed_passages(corpus_settings, fake):
    first = build(corpus_settings, embedder_factory=lambda name: fake)
    path = corpus_settings.corpus / "orchard.txt"
    path.write_text(path.read_text() + "\n\nA brand new closing paragraph about pruning apple trees.\n")
    assert is_stale(corpus_settings)
    again = FakeEmbedder()
    summary = build(corpus_settings, embedder_factory=lambda name: again)
    assert (summary.files_changed, summary.files_unchanged) == (1, len(TOPICS) - 1)
    assert summary.passages_embedded == len(again.embedded) == 1
    assert "pruning apple trees" in again.embedded[0]
    assert summary.passages_reused >= first.passages - 1
    assert summary.passages == summary.passages_embedded + summary.passages_reused


def test_deleted_file_is_gone_from_every_search(corpus_settings, fake):
    build(corpus_settings, embedder_factory=lambda name: fake)
    assert "volcano.txt" in sources_of(corpus_settings, fake, "volcano")
    (corpus_settings.corpus / "volcano.txt").unlink()
    summary = build(corpus_settings, embedder_factory=lambda name: fake)
    assert summary.files_removed == 1 and summary.passages_removed > 0
    assert "volcano.txt" not in sources_of(corpus_settings, fake, "volcano report visitors detail")
    assert "volcano.txt" not in store.load(corpus_settings.index).manifest.files


def test_renamed_or_moved_file_reuses_every_vector(corpus_settings, fake):
    build(corpus_settings, embedder_factory=lambda name: fake)
    (corpus_settings.corpus / "archive").mkdir()
    (corpus_settings.corpus / "bakery.txt").rename(corpus_settings.corpus / "archive" / "old-bakery.txt")
    again = FakeEmbedder()
    summary = build(corpus_settings, embedder_factory=lambda name: again)
    assert (summary.files_renamed, summary.passages_embedded, summary.passages_removed) == (1, 0, 0)
    ids = [p.id for p in store.load(corpus_settings.index).passages if "bakery" in p.source]
    assert ids and all(i.startswith("archive/old-bakery.txt#") for i in ids)


def test_a_rename_beside_a_removal_counts_only_the_removed_passages(corpus_settings, fake):
    first = build(corpus_settings, embedder_factory=lambda name: fake)
    gone = store.load(corpus_settings.index).manifest.files["volcano.txt"].passages
    (corpus_settings.corpus / "bakery.txt").rename(corpus_settings.corpus / "bakery-notes.txt")
    (corpus_settings.corpus / "volcano.txt").unlink()
    summary = build(corpus_settings, embedder_factory=lambda name: fake)
    assert (summary.files_renamed, summary.files_removed) == (1, 1)
    assert summary.passages_removed == gone > 0
    assert summary.passages == first.passages - gone


def test_identical_text_in_a_new_file_is_not_embedded_again(corpus_settings, fake):
    build(corpus_settings, embedder_factory=lambda name: fake)
    copy = corpus_settings.corpus / "copy-of-meadow.txt"
    copy.write_text((corpus_settings.corpus / "meadow.txt").read_text())
    again = FakeEmbedder()
    summary = build(corpus_settings, embedder_factory=lambda name: again)
    assert summary.files_added == 1 and summary.passages_embedded == 0 and again.embedded == []


@pytest.mark.parametrize(
    "change",
    [{"model": "another-model"}, {"overlap": 0}, {"max_tokens": 20}],
    ids=["model", "overlap", "max_tokens"],
)
def test_model_or_chunking_change_forces_a_full_rebuild(corpus_settings, fake, change):
    first = build(corpus_settings, embedder_factory=lambda name: fake)
    again = FakeEmbedder(name=change.get("model", "fake-model"))
    changed = corpus_settings.replace(**change)
    assert is_stale(changed)
    summary = build(changed, embedder_factory=lambda name: again)
    assert summary.full and "settings changed" in summary.reason
    assert summary.passages_reused == 0 and summary.passages_embedded == summary.passages
    manifest = store.load(changed.index).manifest
    assert (manifest.model, manifest.overlap, manifest.max_tokens) == (
        changed.model,
        changed.overlap,
        changed.max_tokens,
    )
    assert first.version != summary.version


def test_the_arithmetic_is_recorded_and_an_int8_index_is_never_mixed_with_float_vectors(corpus_settings, monkeypatch):
    from rag.build.status import index_status

    settings = corpus_settings.replace(precision="int8")
    first = build(settings, embedder_factory=lambda name: FakeEmbedder())
    assert first.precision == "int8" and first.line().endswith(
        f"; arithmetic int8, set by RAG_PRECISION; 1 segment; {first.seconds:.1f}s"
    )
    assert store.load(settings.index).manifest.precision == "int8"
    assert store.load(settings.index).manifest.int8_recipe == vector_recipe("int8") == "ffn-out split 8"
    assert index_status(settings)["arithmetic"] == "int8, set by RAG_PRECISION"
    assert index_status(settings)["int8_recipe"] == "ffn-out split 8"
    settings = corpus_settings.replace(
        precision="auto"
    )  # auto extends the index in its own arithmetic, whatever the CPU
    assert not is_stale(settings)
    (settings.corpus / "extra.txt").write_text("The harbour crane lifts forty tonnes.", encoding="utf-8")
    extended = build(settings, embedder_factory=lambda name: FakeEmbedder())
    assert not extended.full and extended.passages_embedded == 1 and extended.precision == "int8"
    assert "int8, the index's arithmetic" in extended.arithmetic
    settings = corpus_settings.replace(
        precision="float32"
    )  # an explicit other arithmetic rebuilds everything, saying why
    assert is_stale(settings)
    rebuilt = build(settings, embedder_factory=lambda name: FakeEmbedder())
    assert rebuilt.full and "arithmetic: index has int8, RAG_PRECISION asks for float32" in rebuilt.reason
    assert rebuilt.passages_reused == 0 and rebuilt.passages_embedded == rebuilt.passages
    assert store.load(settings.index).manifest.precision == "float32"
    settings = corpus_settings.replace(precision="bfloat16")  # float32 and bfloat16 vectors agree: no rebuild
    assert not is_stale(settings)


def test_an_int8_index_of_another_recipe_is_rebuilt_in_full_saying_why(corpus_settings, monkeypatch):
    import rag.embed.int8

    settings = corpus_settings.replace(precision="int8")
    build(settings, embedder_factory=lambda name: FakeEmbedder())
    assert not is_stale(settings)
    monkeypatch.setattr(
        rag.embed.int8, "INT8", rag.embed.int8.Int8Recipe(ffn_output="float32")
    )  # a rag with another recipe
    assert is_stale(settings) and is_stale(corpus_settings.replace(precision="auto"))
    rebuilt = build(corpus_settings.replace(precision="auto"), embedder_factory=lambda name: FakeEmbedder())
    assert rebuilt.full and rebuilt.passages_reused == 0
    assert "int8 recipe: index has ffn-out split 8, this rag uses ffn-out float32" in rebuilt.reason
    assert store.load(settings.index).manifest.int8_recipe in ("ffn-out float32", "")  # what auto chose here, recorded


def test_the_planned_arithmetic_is_the_one_the_build_then_records(corpus_settings):
    """What a cluster build hands its actors: read from the manifest, the same as the build's own choice."""
    from rag.build.indexer import planned_arithmetic
    from rag.embed.arithmetic import build_arithmetic

    int8 = corpus_settings.replace(precision="int8")
    assert planned_arithmetic(int8).precision == "int8"  # no index yet: what is asked for
    build(int8, embedder_factory=lambda name: FakeEmbedder())
    auto = corpus_settings.replace(precision="auto")
    assert planned_arithmetic(auto).precision == "int8"  # auto extends the index in its own arithmetic
    assert planned_arithmetic(auto, full=True).precision == build_arithmetic("auto", None).precision
    assert planned_arithmetic(corpus_settings.replace(precision="float32")).precision == "float32"  # a rebuild
    (corpus_settings.corpus / "extra.txt").write_text("The harbour crane lifts forty tonnes.", encoding="utf-8")
    assert build(auto, embedder_factory=lambda name: FakeEmbedder()).precision == planned_arithmetic(auto).precision


def test_status_says_when_questions_to_a_bfloat16_index_run_in_float32_here(corpus_settings, monkeypatch):
    import rag.embed.arithmetic
    from rag.build.status import index_status

    settings = corpus_settings.replace(precision="bfloat16")
    build(settings, embedder_factory=lambda name: FakeEmbedder())
    monkeypatch.setattr(rag.embed.arithmetic, "cpu_flags", lambda: frozenset({"avx2"}))  # a CPU without native bfloat16
    info = index_status(settings)
    assert info["arithmetic"] == "bfloat16, set by RAG_PRECISION" and info["state"] == "up to date"
    assert info["question_arithmetic"].startswith("float32: the index is bfloat16, not native on this CPU")


def test_the_default_model_is_loaded_in_the_arithmetic_of_the_build_and_of_the_index(corpus_settings, monkeypatch):
    import rag.build.indexer
    import rag.search

    asked = []

    def load(name, precision):
        asked.append(precision)
        fake = FakeEmbedder()
        fake.precision = precision
        return fake

    monkeypatch.setattr(rag.build.indexer, "load_embedder", load)
    monkeypatch.setattr(rag.search, "load_embedder", load)
    settings = corpus_settings.replace(precision="int8")
    build(settings)
    settings = corpus_settings.replace(precision="float32")  # what the config says now does not decide the questions'
    Retriever(settings).search("reactor coolant")
    assert asked == ["int8", "int8", "int8"]


def test_questions_in_an_arithmetic_the_index_was_not_built_in_are_refused(corpus_settings, monkeypatch):
    from rag.errors import IndexMismatch

    settings = corpus_settings.replace(precision="int8")
    build(settings, embedder_factory=lambda name: FakeEmbedder())
    float32 = FakeEmbedder()
    float32.precision = "float32"
    with pytest.raises(IndexMismatch, match="holds int8 vectors but questions would be embedded in float32"):
        Retriever(settings, embedder_factory=lambda name: float32)


def test_full_flag_rebuilds_from_nothing(corpus_settings, fake):
    first = build(corpus_settings, embedder_factory=lambda name: fake)
    again = FakeEmbedder()
    summary = build(corpus_settings, full=True, embedder_factory=lambda name: again)
    assert summary.full and summary.passages_embedded == first.passages == len(again.embedded)


def test_summary_json_has_every_count(corpus_settings, fake):
    summary = build(corpus_settings, embedder_factory=lambda name: fake).to_dict()
    for key in (
        "files_added",
        "files_changed",
        "files_removed",
        "files_unchanged",
        "passages_embedded",
        "passages_reused",
        "passages_removed",
        "seconds",
    ):
        assert key in summary
    json.dumps(summary)


def test_second_build_waits_for_the_first_then_refuses_with_a_clear_message(corpus_settings, fake):
    with build_lock(corpus_settings.index, timeout=1):
        with pytest.raises(BuildLocked, match="another build .* is writing"):
            build(corpus_settings.replace(lock_timeout=0.3), embedder_factory=lambda name: fake)
    assert build(corpus_settings, embedder_factory=lambda name: fake).passages > 0


def test_two_concurrent_builds_leave_one_consistent_index(corpus_settings):
    results, errors = [], []

    def run():
        try:
            results.append(
                build(corpus_settings.replace(lock_timeout=30), embedder_factory=lambda name: FakeEmbedder(delay=0.002))
            )
        except Exception as error:  # noqa: BLE001 - the test reports any failure
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.passages_embedded > 0 for r in results) == [False, True]  # the second found nothing to do
    loaded = store.load(corpus_settings.index)
    assert len(loaded.passages) == loaded.manifest.passages
    assert all(p.segment.faiss.ntotal == len(p.segment.passages) for p in loaded.parts)


def test_missing_index_says_to_build(make_settings):
    settings = make_settings()
    with pytest.raises(IndexMissing, match="rag build"):
        store.load(settings.index)


@pytest.mark.parametrize("what", DAMAGES)
def test_damaged_index_is_detected_and_rebuilt(corpus_settings, fake, what):
    build(corpus_settings, embedder_factory=lambda name: fake)
    damage_version(store.current_version(corpus_settings.index), what)
    with pytest.raises(IndexDamaged, match="rag build --full"):
        store.load(corpus_settings.index)
    summary = build(corpus_settings, embedder_factory=lambda name: FakeEmbedder())
    assert summary.full and "unusable" in summary.reason
    store.load(corpus_settings.index)


@pytest.mark.parametrize("what", DAMAGES)
def test_running_retriever_keeps_serving_when_a_new_version_is_damaged(corpus_settings, fake, what):
    build(corpus_settings, embedder_factory=lambda name: fake)
    retriever = Retriever(corpus_settings, embedder_factory=lambda name: fake)
    before = [h.passage.id for h in retriever.search("glacier visitors", k=5)]
    (corpus_settings.corpus / "glacier.txt").write_text("Completely different glacier text now.")
    build(corpus_settings, embedder_factory=lambda name: fake)
    damage_version(store.current_version(corpus_settings.index), what)
    assert [h.passage.id for h in retriever.search("glacier visitors", k=5)] == before
    assert "rag build --full" in retriever.reload_error


def test_retriever_picks_up_a_new_index_without_restart(corpus_settings, fake):
    build(corpus_settings, embedder_factory=lambda name: fake)
    retriever = Retriever(corpus_settings, embedder_factory=lambda name: fake)
    assert "zeppelin.txt" not in {h.passage.source for h in retriever.search("zeppelin airship", k=3)}
    write_corpus(corpus_settings.corpus, {"zeppelin.txt": "The zeppelin airship floated over the harbour."})
    build(corpus_settings, embedder_factory=lambda name: fake)
    assert retriever.search("zeppelin airship", k=1)[0].passage.source == "zeppelin.txt"


def test_staging_left_by_a_dead_build_is_cleaned_and_old_versions_pruned(corpus_settings, fake):
    build(corpus_settings, embedder_factory=lambda name: fake)
    (corpus_settings.index / ".tmp-v-dead").mkdir()
    for topic in TOPICS[:3]:
        (corpus_settings.corpus / f"{topic}.txt").write_text(f"new {topic} text")
        build(corpus_settings, embedder_factory=lambda name: fake)
    (corpus_settings.index / store.SEGMENTS / ".tmp-s-dead").mkdir()
    names = sorted(p.name for p in corpus_settings.index.iterdir())
    assert not any(n.startswith(".tmp-") for n in names)
    assert len([n for n in names if n.startswith("v-")]) == 1  # nobody holds an older version
    build(corpus_settings, full=True, embedder_factory=lambda name: fake)
    live = store.load(corpus_settings.index)
    assert sorted(p.name for p in (corpus_settings.index / store.SEGMENTS).iterdir()) == [live.parts[0].segment.name]


def test_an_index_of_an_older_format_is_named_outdated_and_rebuilt_in_full(corpus_settings, fake):
    from rag.build.status import index_status
    from rag.errors import IndexMismatch

    build(corpus_settings, embedder_factory=lambda name: fake)
    manifest = store.current_version(corpus_settings.index) / store.MANIFEST
    older = FORMAT_VERSION - 1
    manifest.write_text(manifest.read_text().replace(f'"format_version":{FORMAT_VERSION}', f'"format_version":{older}'))
    with pytest.raises(
        IndexMismatch, match=f"format version {older}, this rag reads {FORMAT_VERSION}; run `rag build --full`"
    ):
        store.load(corpus_settings.index)
    assert index_status(corpus_settings)["state"] == "outdated"
    summary = build(corpus_settings, embedder_factory=lambda name: FakeEmbedder())
    assert summary.full and summary.passages_embedded == summary.passages


@pytest.mark.parametrize("change", ["stopwords", "version", "stemmer"])
def test_a_changed_bm25_tokenizer_rebuilds_the_index_in_full_and_says_why(corpus_settings, fake, monkeypatch, change):
    from rag.build.indexer import is_stale
    from rag.index import bm25

    build(corpus_settings, embedder_factory=lambda name: fake)
    assert not is_stale(corpus_settings)
    monkeypatch.setattr(bm25, "TOKENIZER", {**bm25.TOKENIZER, change: "changed"})
    assert is_stale(corpus_settings)
    summary = build(corpus_settings, embedder_factory=lambda name: fake)
    assert summary.full and f"BM25 tokenizer: index was built with other {change}" in summary.reason
    assert store.load(corpus_settings.index).manifest.tokenizer[change] == "changed"
    assert not is_stale(corpus_settings)


def test_large_corpora_get_an_approximate_index_that_still_finds_the_passage(make_settings, monkeypatch):
    settings = make_settings().replace(exact_up_to=100)
    write_corpus(
        settings.corpus, {f"f{i:03}.txt": f"Record {i}: alpha{i} beta{i} gamma{i} delta{i}." for i in range(400)}
    )
    build(settings, embedder_factory=lambda name: FakeEmbedder())
    loaded = store.load(settings.index)
    assert loaded.manifest.index_type == "ivf-sq8" and loaded.parts[0].segment.faiss.ntotal == 400
    vectors = loaded.vectors.all()
    for row in (0, 123, 399):  # each passage's own vector finds that passage first (or tied first)
        best = loaded.search_dense(np.asarray(vectors[row]), 3)
        assert row in [r for r, score in best if score >= best[0][1] - 1e-6]
    # a candidate only BM25 found (the dense side searches near row 0) gets its cosine from the
    # stored vectors: an IVF index cannot reconstruct one
    fake = FakeEmbedder()
    retriever = Retriever(settings.replace(candidates=5), embedder_factory=lambda name: fake)
    hits = retriever.search("alpha123", k=5, query_vector=np.asarray(vectors[0]))
    found = {h.passage.source: h for h in hits}
    assert "f123.txt" in found and found["f123.txt"].lexical > 0
    assert found["f123.txt"].dense == pytest.approx(float(np.asarray(vectors[123]) @ np.asarray(vectors[0])), abs=1e-5)


def test_vector_rows_read_exactly_the_stored_rows_in_the_order_asked(corpus_settings, fake):
    build(corpus_settings, embedder_factory=lambda name: fake)
    folder = newest_segment(store.current_version(corpus_settings.index))
    stored = np.load(folder / segment.VECTORS)
    rows = VectorRows(folder / segment.VECTORS)
    assert len(rows) == len(stored) and rows.shape == stored.shape
    order = [len(stored) - 1, 0, len(stored) // 2, 0]
    assert np.array_equal(rows[order], stored[order])
    assert np.array_equal(rows[np.asarray([1])], stored[[1]])
    with pytest.raises(IndexError):
        rows[[len(stored)]]


def test_a_new_splitter_cuts_every_file_again_and_embeds_only_passages_whose_text_changed(corpus_settings, monkeypatch):
    """An index cut by an older splitter (here: one unbounded passage for a transcript of unpunctuated lines) is
    re-cut file by file, saying why; unchanged passages keep their vectors."""
    import json

    from rag.build import reuse
    from rag.ingest.chunking import MAX_PASSAGE_CHARS, passages_of
    from rag.types import Passage

    lines = [f"item {n} on the list is the {word} one" for n, word in enumerate(["red", "blue", "green"] * 40)]
    (corpus_settings.corpus / "transcript.txt").write_text("\n".join(lines), encoding="utf-8")

    def old_cutter(document, count_tokens, budget, overlap):
        if document.source != "transcript.txt":
            return passages_of(document, count_tokens, budget, overlap)
        text = document.text
        return [Passage("transcript.txt#1", "transcript.txt", 0, len(text), 1, text.count("\n") + 1, text)]

    monkeypatch.setattr(reuse, "passages_of", old_cutter)
    fake = FakeEmbedder()
    first = build(corpus_settings, embedder_factory=lambda name: fake)
    live = store.current_version(corpus_settings.index) / store.MANIFEST
    manifest = json.loads(live.read_text())
    manifest["splitter"] = "sentences-v2"  # as the splitter before bounded passages wrote it
    live.write_text(json.dumps(manifest))
    monkeypatch.undo()

    assert is_stale(corpus_settings)
    again = build(corpus_settings, embedder_factory=lambda name: fake)
    assert not again.full and "the sentence splitter changed (index sentences-v2" in again.reason
    assert "the sentence splitter changed" in again.line()
    index = store.load(corpus_settings.index)
    transcript = index.file_passages("transcript.txt")
    assert len(transcript) > 1 and all(p.end - p.start <= MAX_PASSAGE_CHARS for p in transcript)
    assert again.passages_embedded == len(transcript)  # the other files' passages are as they were
    assert again.passages_reused == first.passages - 1
    assert index.manifest.splitter != "sentences-v2" and not is_stale(corpus_settings)


def test_files_of_types_not_read_are_counted_and_named_not_ignored(corpus_settings):
    """A build, its JSON, `rag status` and the chat's status line name the types left out, and the setting that
    would take a type in when a reader for it exists."""
    from rag.build.status import index_status
    from rag.search import Retriever
    from rag.serve.library import Shelf
    from rag.serve.render import status_line

    for name in ("photo.png", "scan.jpg", "talk.key", "more/slides.key", "Makefile", "table.csv"):
        path = corpus_settings.corpus / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"\x89PNG not read here" if name.endswith("png") else b"a,b\n1,2\n")
    settings = corpus_settings.replace(extensions=(".txt",))
    summary = build(settings, embedder_factory=lambda name: FakeEmbedder())
    assert summary.not_read == {"": 1, ".csv": 1, ".jpg": 1, ".key": 2, ".png": 1}
    line = (
        "6 files of types not read: (no ending), .csv, .jpg, .key, .png; .csv, .jpg, .png have readers: "
        "add to RAG_EXTENSIONS"
    )
    assert line in summary.line() and summary.to_dict()["not_read"][".key"] == 2
    assert index_status(settings)["not_read"] == line
    retriever = Retriever(settings, embedder_factory=lambda name: FakeEmbedder())
    assert line in status_line([Shelf(None, settings, retriever)])

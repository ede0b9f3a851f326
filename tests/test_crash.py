"""A build killed with SIGKILL at any moment leaves the previous index loading and answering."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import writers
from conftest import write_corpus
from fakes import FakeEmbedder

from rag.build.indexer import build
from rag.index import store
from rag.search import Retriever

SCRIPT = Path(__file__).with_name("slow_build.py")
QUESTIONS = ["harbour ferries", "glacier ice", "orchard apples"]


def answers(settings, fake):
    retriever = Retriever(settings, embedder_factory=lambda name: fake)
    return {q: [h.passage.id for h in retriever.search(q, k=3)] for q in QUESTIONS}


@pytest.mark.parametrize(
    "phase", ["converting", "embedding", "writing", "publishing", "published", "merging", "merged"]
)
def test_sigkill_during_build_keeps_the_old_index_serving(make_settings, phase):
    settings = make_settings()
    write_corpus(
        settings.corpus,
        {
            "harbour.txt": "The harbour ferries leave at dawn. Fishing boats return at dusk.",
            "glacier.txt": "The glacier ice retreats every summer. Meltwater feeds the lake.",
            "orchard.txt": "The orchard apples ripen in October. Pickers arrive by bus.",
        },
    )
    fake = FakeEmbedder()
    build(settings, embedder_factory=lambda name: fake)
    before = answers(settings, fake)
    old_version = store.current_version(settings.index)
    write_corpus(
        settings.corpus, {"orchard.txt": "Orchard apples were replaced by pears.", "new.txt": "A new harbour note."}
    )
    writers.text_pdf(settings.corpus / "ferries.pdf", [["The harbour ferries now run at noon as well."]])

    child = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(settings.corpus), str(settings.index), phase],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == f"PHASE {phase}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    loaded = store.load(settings.index)  # loads cleanly whatever the moment of death
    assert len(loaded.passages) == loaded.manifest.passages
    assert all(p.segment.faiss.ntotal == len(p.segment.passages) for p in loaded.parts)
    if phase in ("published", "merging", "merged"):
        assert store.current_version(settings.index) != old_version  # the swap had completed
        assert {"new.txt", "ferries.pdf"} <= set(loaded.manifest.files)
        assert len(loaded.parts) == (1 if phase == "merged" else 2)
    else:
        assert store.current_version(settings.index) == old_version
        assert answers(settings, fake) == before
    loaded.release()
    summary = build(settings, embedder_factory=lambda name: fake)  # the next build finishes the job
    assert not any(p.name.startswith(".tmp-") for p in settings.index.iterdir())
    listed = {entry.name for entry in store.load(settings.index).manifest.segments}
    assert {p.name for p in (settings.index / store.SEGMENTS).iterdir()} == listed  # nothing half-written stays
    assert {"new.txt", "ferries.pdf"} <= set(store.load(settings.index).manifest.files)
    assert summary.passages == len(store.load(settings.index).passages)

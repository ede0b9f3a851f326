"""Shared fixtures: tiny corpora, a fake embedder for logic, the real packaged model for the real path."""

from __future__ import annotations

import queue
import shutil
import threading
from pathlib import Path

import pytest

from fakes import FakeEmbedder
from rag.config import DEFAULT_MODEL, Settings

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "seeds" / "000_46ad57352320fbef.txt"


@pytest.fixture(scope="session")
def real_embedder():
    """The bundled all-MiniLM-L6-v2, loaded once for the whole run."""
    from rag.embedding import load_embedder

    return load_embedder(DEFAULT_MODEL)


@pytest.fixture
def fake():
    return FakeEmbedder()


@pytest.fixture
def make_settings(tmp_path):
    """Settings for a corpus and an index inside this test's temporary folder."""

    def make(**changes) -> Settings:
        base = Settings(corpus=tmp_path / "corpus", index=tmp_path / "index", model="fake-model", lock_timeout=2.0)
        base.corpus.mkdir(exist_ok=True)
        return base.replace(**changes)

    return make


def write_corpus(folder: Path, files: dict[str, str]) -> None:
    """Create `files` (relative path → text) under `folder`."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def copy_index(settings: Settings, root: Path) -> Settings:
    """A private copy of an indexed corpus under `root`, for tests that change it."""
    copy = settings.replace(corpus=root / "corpus", index=root / "index")
    shutil.copytree(settings.corpus, copy.corpus)
    shutil.copytree(settings.index, copy.index)
    return copy


@pytest.fixture(scope="session")
def seed_settings(tmp_path_factory, real_embedder) -> Settings:
    """The seed article plus one small document, indexed once with the real model."""
    from rag.indexer import build

    root = tmp_path_factory.mktemp("seed")
    corpus = root / "corpus"
    corpus.mkdir()
    shutil.copy(SEED, corpus / SEED.name)
    write_corpus(
        corpus,
        {
            "guides/kettle.md": "# Kettle care\n\nDescale the kettle every four weeks with white vinegar.\n\n"
            "Never run the kettle dry, because the heating element overheats and the fuse blows.\n"
        },
    )
    settings = Settings(corpus=corpus, index=root / "index", model=DEFAULT_MODEL)
    build(settings)
    return settings


class LineReader:
    """Lines a child process prints, read in a thread so a silent child fails a test instead of hanging it."""

    def __init__(self, stream):
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put("")  # end of output

    def next(self, seconds: float) -> str:
        """The next line ('' at end of output); AssertionError if none comes within `seconds`."""
        try:
            return self._lines.get(timeout=seconds)
        except queue.Empty:
            raise AssertionError(f"no output within {seconds:.0f}s") from None

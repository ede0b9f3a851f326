"""Shared fixtures: tiny corpora, a fake embedder for logic, the real packaged model for the real path."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fakes import FakeEmbedder

from rag.config import DEFAULT_MODEL, Settings
from rag.index import segment, store

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "seeds" / "000_46ad57352320fbef.txt"


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]
REAL_PATH_FIXTURES = {"real_embedder", "seed_settings"}
"""Fixtures that load the packaged model: a test that uses one, directly or not, is `slow`."""
REAL_PATH_MODULES = {"test_serve", "test_browser", "test_watch", "test_embedder", "test_team", "test_doors"}
"""Modules whose tests start real servers, watchers or browsers, or measure the model itself."""


def pytest_collection_modifyitems(config, items):
    """Two tiers: `pytest -m "not slow"` runs the logic without the model or servers; CI runs all."""
    for item in items:
        if REAL_PATH_FIXTURES & set(getattr(item, "fixturenames", ())) or item.module.__name__ in REAL_PATH_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _fast_tier_never_loads_the_model(request, monkeypatch):
    """A test outside the slow tier that reaches the real model fails, naming the fix."""
    if request.node.get_closest_marker("slow"):
        return
    import rag.embed.embedder

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} loads the real model: use the fake embedder or mark it slow")

    monkeypatch.setattr(rag.embed.embedder, "_load", refuse)
    monkeypatch.setattr(rag.embed.embedder.SentenceEmbedder, "__init__", refuse)


@pytest.fixture(scope="session")
def real_embedder():
    """The bundled all-MiniLM-L6-v2, loaded once for the whole run."""
    from rag.embed.embedder import load_embedder

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
    from rag.build.indexer import build

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(settings, *flags, env_extra=None):
    """Start `rag serve` and wait until it prints its URL; returns (process, url)."""
    port = free_port()
    env = dict(os.environ, RAG_CORPUS=str(settings.corpus), RAG_INDEX=str(settings.index), **(env_extra or {}))
    process = subprocess.Popen(
        [sys.executable, "-m", "rag", "serve", "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 180
    lines, output = [], LineReader(process.stdout)
    while time.monotonic() < deadline:
        try:
            line = output.next(seconds=max(1.0, deadline - time.monotonic()))
        except AssertionError:
            break
        if not line:
            break
        lines.append(line)
        if "Running on local URL" in line:
            return process, f"http://127.0.0.1:{port}/"
    process.kill()
    raise AssertionError("server did not start:\n" + "".join(lines))


TOPICS = ["harbour", "glacier", "orchard", "volcano", "library", "bakery", "lighthouse", "meadow"]


def topic_text(topic: str, sentences: int = 6) -> str:
    return "\n\n".join(
        f"The {topic} report, part {i}, describes the {topic} in plain words. "
        f"Visitors to the {topic} noted detail number {i} carefully."
        for i in range(sentences)
    )


def newest_segment(version):
    """The folder of the segment a version added last (the one its build wrote)."""
    from rag.index.manifest import Manifest

    name = Manifest.read(version / store.MANIFEST).segments[-1].name
    return version.parent / store.SEGMENTS / name


def damage_version(version, what):
    """Damage one part of a version: its manifest, or a file of the segment it added last."""
    if what == "missing manifest":
        (version / store.MANIFEST).unlink()
        return
    if what == "edited manifest":
        (version / store.MANIFEST).write_text("{not json")
        return
    folder = newest_segment(version)
    if what == "truncated faiss":
        data = (folder / segment.FAISS).read_bytes()
        (folder / segment.FAISS).write_bytes(data[: len(data) // 2])
    elif what == "missing passages":
        (folder / segment.PASSAGES).unlink()
    elif what == "passages out of step":
        lines = (folder / segment.PASSAGES).read_text().splitlines(keepends=True)
        (folder / segment.PASSAGES).write_text("".join(lines[:-1]))
    elif what == "truncated vectors":
        data = (folder / segment.VECTORS).read_bytes()
        (folder / segment.VECTORS).write_bytes(data[:-10])
    elif what == "missing vectors":
        (folder / segment.VECTORS).unlink()
    elif what == "vectors not an array":
        (folder / segment.VECTORS).write_bytes(b"not a numpy file at all")


DAMAGES = [
    "truncated faiss",
    "missing manifest",
    "edited manifest",
    "missing passages",
    "passages out of step",
    "truncated vectors",
    "missing vectors",
    "vectors not an array",
]

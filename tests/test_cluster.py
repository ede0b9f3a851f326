"""The Ray door, without Ray: addresses, clear errors, and a default path that never imports ray."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rag.cli import make_parser, settings_from
from rag.cluster.connect import connect, resolve_address
from rag.errors import ClusterError

DEFAULT_PATH = textwrap.dedent(
    """
    import sys, contextlib, io
    from pathlib import Path
    import rag, rag.cli, rag.build.indexer, rag.search, rag.answer.quotes, rag.serve.chat, rag.serve.launch, rag.build.status
    from fakes import FakeEmbedder
    from rag.config import Settings
    from rag.build.indexer import build
    from rag.search import Retriever
    from rag.answer.quotes import answer
    root = Path(sys.argv[1])
    (root / "corpus").mkdir()
    (root / "corpus" / "a.txt").write_text("The kettle is descaled every four weeks.\\n", encoding="utf-8")
    settings = Settings(corpus=root / "corpus", index=root / "index", model="fake-model")
    fake = FakeEmbedder()
    build(settings, embedder_factory=lambda name: fake)
    answer("How often is the kettle descaled?", Retriever(settings, embedder_factory=lambda name: fake), settings)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        rag.cli.main(["--help"])
    print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
    """
)


def test_the_default_build_answer_and_help_never_import_ray(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", DEFAULT_PATH, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
        env={**os.environ, "PYTHONPATH": "tests"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["build"], ""),
        (["build", "--ray"], "auto"),
        (["build", "--ray", "10.0.0.5:6379", "--full"], "10.0.0.5:6379"),
        (["serve", "--ray", "--replicas", "3"], "auto"),
    ],
)
def test_the_ray_flag_sets_the_cluster_address(argv, expected, monkeypatch):
    monkeypatch.delenv("RAG_RAY_ADDRESS", raising=False)
    assert settings_from(make_parser().parse_args(argv)).ray_address == expected


def test_the_environment_names_a_cluster_and_the_flag_wins(monkeypatch):
    monkeypatch.setenv("RAG_RAY_ADDRESS", "10.0.0.5:6379")
    assert settings_from(make_parser().parse_args(["build"])).ray_address == "10.0.0.5:6379"
    assert settings_from(make_parser().parse_args(["build", "--ray", "auto"])).ray_address == "auto"


def test_auto_without_a_running_cluster_says_how_to_start_one(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    with pytest.raises(ClusterError, match=r"no running Ray cluster.*`ray start --head`"):
        resolve_address("auto")


def test_auto_finds_the_cluster_this_machine_joined(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:6380\n")
    assert resolve_address("auto") == "127.0.0.1:6380"


@pytest.mark.parametrize("address", ["nowhere", "10.0.0.5:", ":6379", "host:port"])
def test_an_address_that_is_not_host_port_is_named(address):
    with pytest.raises(ClusterError, match=r"is not host:port"):
        connect(address)


def test_an_unreachable_cluster_is_one_line_that_says_what_to_do():
    with pytest.raises(
        ClusterError, match=r"^cannot reach the Ray cluster at 127\.0\.0\.1:9 \(.*\); start its head"
    ) as caught:
        connect("127.0.0.1:9")
    assert "\n" not in str(caught.value)


def test_rag_build_against_an_unreachable_cluster_exits_with_one_line(tmp_path):
    (tmp_path / "corpus").mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rag",
            "build",
            "--ray",
            "127.0.0.1:9",
            "--corpus",
            str(tmp_path / "corpus"),
            "--index",
            str(tmp_path / "index"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("rag: error: cannot reach the Ray cluster at 127.0.0.1:9 (")
    assert done.stderr.count("\n") == 1

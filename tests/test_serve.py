"""A real `rag serve` process on a free port, asked through gradio_client, following rebuilds live."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import LineReader, copy_index, write_corpus
from rag.indexer import build


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


@pytest.fixture(scope="module")
def served(seed_settings, tmp_path_factory):
    """A server over a private copy of the seed index (tests here rebuild it)."""
    root = tmp_path_factory.mktemp("served")
    settings = copy_index(seed_settings, root)
    process, url = start_server(settings)
    yield settings, url
    process.terminate()
    process.wait(timeout=30)


def test_served_chat_answers_with_a_cited_quote_through_the_api(served):
    from gradio_client import Client

    settings, url = served
    result = Client(url, verbose=False).predict(
        "In how many countries will the terrorists now solve their problems?", api_name="/ask"
    )
    assert result["abstained"] is False
    first = result["citations"][0]
    assert "about 60 countries" in first["quote"]
    text = (settings.corpus / first["source"]).read_text(encoding="utf-8")
    assert text[first["start"] : first["end"]] == first["quote"]


def test_running_server_answers_from_a_rebuilt_index_without_restart(served):
    from gradio_client import Client

    settings, url = served
    client = Client(url, verbose=False)
    question = "What colour is the lighthouse on Gull Island?"
    assert client.predict(question, api_name="/ask")["abstained"] is True
    write_corpus(settings.corpus, {"gull.txt": "The lighthouse on Gull Island is painted bright red and white."})
    build(settings)
    result = client.predict(question, api_name="/ask")
    assert result["abstained"] is False
    assert result["citations"][0]["source"] == "gull.txt"


def test_non_loopback_bind_without_auth_is_refused(seed_settings):
    done = subprocess.run(
        [sys.executable, "-m", "rag", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, RAG_CORPUS=str(seed_settings.corpus), RAG_INDEX=str(seed_settings.index)),
    )
    assert done.returncode == 2
    assert "RAG_AUTH" in done.stderr and "--no-auth" in done.stderr

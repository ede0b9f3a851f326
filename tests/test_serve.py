"""A real `rag serve` process on a free port, asked through gradio_client, following rebuilds live."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import copy_index, free_port, start_server, write_corpus
from rag.indexer import build


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

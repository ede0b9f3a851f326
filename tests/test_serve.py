"""A real `rag serve` process on a free port, asked through gradio_client, following rebuilds live."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import copy_index, free_port, start_server, write_corpus

from rag.build.indexer import build


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
    assert "rag user add" in done.stderr and "--no-auth" in done.stderr


def wait_for_runtime_file(settings, seconds: float = 30.0):
    """The server's runtime file, written just after it prints its URL."""
    path = settings.index / ".server.json"
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return path


def rag_cli(settings, *args, python_flags=()):
    env = dict(os.environ, RAG_CORPUS=str(settings.corpus), RAG_INDEX=str(settings.index))
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "rag", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_rag_ask_goes_to_the_running_server_and_prints_the_same_as_a_local_answer(served):
    settings, url = served
    question = "In how many countries will the terrorists now solve their problems?"
    runtime = json.loads(wait_for_runtime_file(settings).read_text())
    assert runtime["url"] == url
    fast = rag_cli(settings, "ask", question, python_flags=("-X", "importtime"))
    assert fast.returncode == 0, fast.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in fast.stderr.splitlines() if line.startswith("import time:")}
    assert imported and not imported & {"torch", "sentence_transformers", "gradio", "faiss"}  # nothing heavy loaded
    local = rag_cli(settings, "ask", "--local", question)
    assert local.returncode == 0, local.stderr
    assert fast.stdout == local.stdout and "about 60 countries" in fast.stdout
    served_json, local_json = (
        json.loads(rag_cli(settings, "ask", "--json", *flag, question).stdout) for flag in ((), ("--local",))
    )
    assert served_json == local_json


def test_rag_ask_markdown_quotes_stand_at_their_offsets(served):
    settings, url = served
    question = "In how many countries will the terrorists now solve their problems?"
    markdown = rag_cli(settings, "ask", "--format", "markdown", "--server", url, question).stdout
    result = json.loads(rag_cli(settings, "ask", "--json", "--server", url, question).stdout)
    assert result["citations"]
    for c in result["citations"]:
        assert (settings.corpus / c["source"]).read_text(encoding="utf-8")[c["start"] : c["end"]] == c["quote"]
        assert f"> {c['quote'].splitlines()[0]}" in markdown.replace("**", "")  # the marked answer is bold
        assert f"characters {c['start']}–{c['end']}" in markdown


def test_a_stopped_server_withdraws_and_an_unreachable_one_is_named(seed_settings, tmp_path):
    settings = copy_index(seed_settings, tmp_path)
    process, url = start_server(settings)
    try:
        assert wait_for_runtime_file(settings).exists()
    finally:  # a failed check must not leave the server running
        process.terminate()
        process.wait(timeout=30)
    assert not (settings.index / ".server.json").exists()
    done = rag_cli(settings, "ask", "--server", url, "When did the operation start?")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"rag: error: the server at {url} did not answer") and "Traceback" not in done.stderr

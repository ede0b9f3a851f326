"""rag.serve.client: the runtime file a server leaves, and when `rag ask` may send its question there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rag.config import Settings
from rag.serve import client


@pytest.fixture
def settings(tmp_path):
    (tmp_path / "index").mkdir()
    return Settings(corpus=tmp_path / "corpus", index=tmp_path / "index")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_an_announced_server_is_found_and_withdrawn(settings):
    path = client.announce(settings, "http://127.0.0.1:7999/")
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert client.find_server(settings) == "http://127.0.0.1:7999/"
    client.withdraw(settings)
    assert not path.exists() and client.find_server(settings) is None


@pytest.mark.parametrize(
    "change",
    [
        lambda record: {**record, "pid": dead_pid()},  # the server died without cleaning up
        lambda record: {**record, "pid": "12"},
        lambda record: {k: v for k, v in record.items() if k != "url"},
        lambda record: {**record, "settings": {**record["settings"], "max_quotes": 1}},  # it answers differently
        lambda record: {**record, "settings": {**record["settings"], "corpus": "/elsewhere"}},
    ],
)
def test_a_dead_or_different_server_is_not_asked(settings, change):
    path = client.announce(settings, "http://127.0.0.1:7999/")
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    assert client.find_server(settings) is None


@pytest.mark.parametrize("content", ["", "{not json", "[]", "null"])
def test_a_damaged_runtime_file_is_ignored(settings, content):
    (settings.index / client.RUNTIME).write_text(content)
    assert client.find_server(settings) is None


def test_someone_elses_runtime_file_is_left_alone(settings):
    path = client.announce(settings, "http://127.0.0.1:7999/")
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": dead_pid()}))
    client.withdraw(settings)
    assert path.exists()


def test_settings_that_do_not_shape_answers_do_not_matter(settings):
    client.announce(settings, "http://127.0.0.1:7999/")
    assert client.find_server(settings.replace(port=9000, batch_size=4)) == "http://127.0.0.1:7999/"


def test_a_server_that_is_not_there_is_a_clear_error():
    with pytest.raises(client.ServerUnavailable, match=r"the server at http://127.0.0.1:9/ did not answer .*rag serve"):
        client.ask_server("http://127.0.0.1:9", "anything", timeout=5)

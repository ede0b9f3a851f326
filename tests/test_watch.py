"""`rag watch` and `rag serve --watch` follow the corpus folder and rebuild after a burst of changes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from conftest import LineReader, copy_index, start_server, write_corpus
from fakes import FakeEmbedder

from rag.build.watch import watch_forever
from rag.index import store


def wait_for(condition, seconds=60.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_watch_debounces_a_burst_into_one_incremental_build(make_settings):
    settings = make_settings()
    write_corpus(settings.corpus, {"a.txt": "Alpha text about anchors."})
    fake = FakeEmbedder()
    builds, stop = [], threading.Event()
    thread = threading.Thread(
        target=watch_forever,
        args=(settings, lambda message: None, stop, builds.append, lambda name: fake),
        daemon=True,
    )
    thread.start()
    try:
        assert wait_for(lambda: len(builds) == 1)
        for i in range(5):  # a burst of changes
            write_corpus(settings.corpus, {f"burst{i}.txt": f"Burst file {i} about bells."})
        assert wait_for(lambda: len(builds) >= 2)
        time.sleep(2.5)
        assert len(builds) == 2, [b.line() for b in builds]
        assert builds[1].files_added == 5 and builds[1].files_unchanged == 1
        (settings.corpus / "a.txt").unlink()
        assert wait_for(lambda: len(builds) == 3)
        assert builds[2].files_removed == 1
        assert "a.txt" not in store.load(settings.index).manifest.files
    finally:
        stop.set()
        thread.join(timeout=10)


def test_rag_watch_command_rebuilds_after_a_change(seed_settings, tmp_path):
    settings = copy_index(seed_settings, tmp_path)
    env = dict(os.environ, RAG_CORPUS=str(settings.corpus), RAG_INDEX=str(settings.index), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "rag", "watch"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        lines, output = [], LineReader(process.stdout)
        while not any("watching" in line for line in lines):
            lines.append(output.next(seconds=120))
            assert lines[-1], "".join(lines)
        assert any(line.startswith("index up to date") for line in lines), lines
        write_corpus(settings.corpus, {"new.md": "The watch test adds this sentence about walruses."})
        line = output.next(seconds=120)
        assert line.startswith("incremental build; files: 1 added"), line
        assert "new.md" in store.load(settings.index).manifest.files
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_watch_answers_from_a_file_added_while_it_runs(seed_settings, tmp_path):
    from gradio_client import Client

    settings = copy_index(seed_settings, tmp_path)
    process, url = start_server(settings, "--watch")
    try:
        client = Client(url, verbose=False)
        question = "What do the penguins in the zoo eat?"
        assert client.predict(question, api_name="/ask")["abstained"] is True
        write_corpus(settings.corpus, {"zoo.txt": "The penguins in the zoo eat fresh herring twice a day."})
        assert wait_for(lambda: client.predict(question, api_name="/ask")["abstained"] is False, seconds=90)
        assert client.predict(question, api_name="/ask")["citations"][0]["source"] == "zoo.txt"
    finally:
        process.terminate()
        process.wait(timeout=30)

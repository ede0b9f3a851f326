"""A real multi-node Ray cluster on this machine (a head and a worker, separate raylets on loopback).

Ray builds equal local builds, incremental Ray builds embed only what changed, a node killed mid-build
never publishes a half-written version, and replicated servers answer with verified quotes and follow
rebuilds. One cluster for the whole session; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import replace

import numpy as np
import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback stays loopback (see rag/cluster/connect.py)
ray = pytest.importorskip("ray", reason="the Ray tests need the extra: pip install -e '.[test,ray]'")

from conftest import SEED, write_corpus  # noqa: E402

from rag.build.indexer import build  # noqa: E402
from rag.build.summary import BuildSummary  # noqa: E402
from rag.config import DEFAULT_MODEL, Settings  # noqa: E402
from rag.errors import ClusterError  # noqa: E402
from rag.index import store  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NODE = dict(num_cpus=1, object_store_memory=200 * 1024**2, node_ip_address="127.0.0.1", include_dashboard=False)


@pytest.fixture(scope="session")
def cluster():
    """A head and one worker node, each with one CPU, joined by this process (the driver)."""
    from ray.cluster_utils import Cluster

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # A killed node is declared dead after about 3 s of missed health checks (Ray's default: 15 s).
    system = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    for attempt in (1, 2):  # Ray gives a raylet a fixed 30 s to register: a very busy machine can miss it once
        local = Cluster(initialize_head=False)
        try:
            local.add_node(**NODE, _system_config=system)
            local.add_node(**NODE)
            local.wait_for_nodes(timeout=120)
            break
        except Exception:
            local.shutdown()
            if attempt == 2:
                raise
    try:
        yield local
    finally:
        if ray.is_initialized():
            ray.shutdown()
        local.shutdown()


def ray_settings(root, cluster, **changes) -> Settings:
    corpus = root / "corpus"
    if not corpus.exists():
        corpus.mkdir(parents=True)
        shutil.copy(SEED, corpus / SEED.name)
        write_corpus(corpus, {f"notes/{n}.md": note(n) for n in range(4)})
    settings = Settings(corpus=corpus, index=root / "index", model=DEFAULT_MODEL, ray_address=cluster.address)
    return settings.replace(**changes)


def note(n: int) -> str:
    return (
        "\n\n".join(
            f"Note {n}, paragraph {p}: the kettle number {n * 10 + p} was descaled with {p + 1} cups of vinegar "
            f"and the {['red', 'blue', 'green', 'white'][p % 4]} lid was cleaned on day {n + p}."
            for p in range(12)
        )
        + "\n"
    )


def vectors_of(index):
    loaded = store.load(index)
    return loaded, loaded.vectors.all()


def assert_same_index(local_index, ray_index):
    local, local_vectors = vectors_of(local_index)
    remote, remote_vectors = vectors_of(ray_index)
    assert [(p.id, p.source, p.start, p.end, p.line_start, p.line_end, p.text) for p in remote.passages] == [
        (p.id, p.source, p.start, p.end, p.line_start, p.line_end, p.text) for p in local.passages
    ]
    unnamed = lambda files: {source: replace(entry, segment="") for source, entry in files.items()}  # noqa: E731
    assert unnamed(remote.manifest.files) == unnamed(local.manifest.files)  # segment names are unique
    assert (remote.manifest.model, remote.manifest.dimension) == (local.manifest.model, local.manifest.dimension)
    cosines = np.sum(np.asarray(local_vectors) * np.asarray(remote_vectors), axis=1)
    assert cosines.min() >= 0.9999, f"lowest cosine {cosines.min():.6f}"


def test_ray_build_equals_local_build_and_increments_by_what_changed(cluster, tmp_path, real_embedder, monkeypatch):
    from rag.cluster import build as distributed_build
    from rag.cluster.build import build_on_cluster

    monkeypatch.setattr(distributed_build, "ROWS_PER_BLOCK", 4)  # several blocks, so progress has a rate
    monkeypatch.setattr(distributed_build, "PROGRESS_EVERY", 0.0)

    settings = ray_settings(tmp_path / "ray", cluster)
    local = settings.replace(index=tmp_path / "local-index")
    build(local)
    lines: list[str] = []
    summary = build_on_cluster(settings, progress=lines.append)
    assert summary.full and summary.passages_embedded == summary.passages > 10
    assert any(line.startswith(f"embedded {summary.passages}/{summary.passages} passages") for line in lines), lines
    assert any(line.startswith("embedded ") and "/s since the first" in line for line in lines), lines
    assert_same_index(local.index, settings.index)

    with open(settings.corpus / "notes/2.md", "a", encoding="utf-8") as handle:
        handle.write("\nA brand new paragraph: the kettle was replaced by a samovar.\n")
    local_summary = build(local)
    done = subprocess.run(  # this time through the command line, as a user runs it
        [
            sys.executable,
            "-m",
            "rag",
            "build",
            "--ray",
            cluster.address,
            "--json",
            "--corpus",
            str(settings.corpus),
            "--index",
            str(settings.index),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "embedded " in done.stderr and "embedded " not in done.stdout  # progress goes to stderr
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert printed.pop("collection") is None  # RAG_CORPUS alone, no collection named
    ray_summary = BuildSummary(**printed)
    assert not ray_summary.full
    assert 0 < ray_summary.passages_embedded == local_summary.passages_embedded < ray_summary.passages // 4
    assert ray_summary.passages_reused == local_summary.passages_reused
    assert_same_index(local.index, settings.index)


def test_unreachable_cluster_is_one_clear_line(tmp_path):
    from rag.cluster.connect import connect

    with pytest.raises(ClusterError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:9 .*ray start --head"):
        connect("127.0.0.1:9")


def test_cluster_without_the_model_is_one_clear_line(cluster, tmp_path):
    from rag.cluster.connect import check_nodes, connect

    connect(cluster.address)
    with pytest.raises(ClusterError, match=r"cannot embed with '/nowhere/model'.*pip install 'rag\[ray\]'"):
        check_nodes(ray, "/nowhere/model")


def test_node_killed_mid_build_publishes_a_whole_version_or_none(cluster, tmp_path, monkeypatch, real_embedder):
    """A third node joins, takes part in the build, and is killed while passages are being embedded."""
    from rag.answer.quotes import answer
    from rag.cluster import build as distributed_build
    from rag.search import Retriever

    settings = ray_settings(tmp_path / "kill", cluster)
    build(settings)  # the live version, built locally
    before = store.current_version(settings.index).name
    write_corpus(settings.corpus, {f"more/{n}.md": note(n + 10) for n in range(12)})
    monkeypatch.setattr(distributed_build, "ROWS_PER_BLOCK", 2)  # 12 blocks: the killed node has some in hand
    monkeypatch.setattr(distributed_build, "PROGRESS_EVERY", 0.0)
    victim = cluster.add_node(**NODE)
    cluster.wait_for_nodes(timeout=120)
    killed = threading.Event()

    def progress(line: str) -> None:
        print(line)  # shown when the test fails: how far the build got and what it said
        if line.startswith("embedded ") and not killed.is_set():
            killed.set()
            cluster.remove_node(victim, allow_graceful=False)

    try:
        summary = distributed_build.build_on_cluster(settings, progress=progress)
    except ClusterError as error:
        print(f"build stopped: {error}")
        assert "nothing was published and the live index is unchanged" in str(error)
        assert store.current_version(settings.index).name == before
        summary = None
    assert killed.is_set(), "the node was never killed: the build finished before any progress"
    loaded = store.load(settings.index)  # whichever version is live loads whole and answers
    assert len(loaded.passages) == loaded.manifest.passages == len(loaded.vectors.all())
    if summary is not None:
        assert loaded.folder.name == summary.version != before
        assert sum(1 for p in loaded.passages if p.source.startswith("more/")) == summary.passages_embedded
    result = answer("Which kettle was descaled with 4 cups of vinegar?", Retriever(settings), settings)
    assert not result.abstained
    for citation in result.citations:
        text = (settings.corpus / citation.source).read_text(encoding="utf-8")
        assert text[citation.start : citation.end] == citation.quote


NEW_FACT = "The lighthouse on Gull Island is painted bright red and white."


def ask_http(url: str, question: str) -> dict:
    import json
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps({"question": question}).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.loads(reply.read())


def assert_verified(settings, reply: dict):
    assert not reply["abstained"] and reply["citations"], reply
    for citation in reply["citations"]:
        text = (settings.corpus / citation["source"]).read_text(encoding="utf-8")
        assert text[citation["start"] : citation["end"]] == citation["quote"]


def test_two_replicas_answer_concurrently_and_both_follow_a_rebuild(cluster, tmp_path, real_embedder):
    """Two Ray Serve replicas answer through HTTP and through the chat page's `/ask`, then serve a rebuild."""
    import time
    import urllib.error
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client
    from test_serve import free_port

    from rag.cluster import replicas as ray_replicas
    from rag.serve.chat import make_app
    from rag.serve.launch import launch
    from rag.serve.library import Access, Library, Shelf

    settings = ray_settings(tmp_path / "serve", cluster, port=free_port())
    build(settings)
    api = free_port()
    handle = ray_replicas.start_replicas(settings, 2, api_port=api, cpus_per_replica=0.5)
    demo = None
    try:
        url = f"http://127.0.0.1:{api}/ask"
        question = "In how many countries will the terrorists now solve their problems?"
        seen: set[str] = set()
        deadline = time.monotonic() + 120
        with ThreadPoolExecutor(max_workers=6) as pool:
            while len(seen) < 2 and time.monotonic() < deadline:
                for reply in pool.map(lambda _: ask_http(url, question), range(6)):
                    assert_verified(settings, reply)
                    assert "about 60 countries" in reply["citations"][0]["quote"]
                    seen.add(reply["replica"])
        assert len(seen) == 2, f"only {seen} answered"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, data=b"not json", method="POST"), timeout=60)
        assert refused.value.code == 400 and "send JSON like" in json.loads(refused.value.read())["error"]
        old_version = reply["index_version"]

        backend = ray_replicas.ReplicaBackend(settings, handle, 2)
        access = Access(Library({None: Shelf(None, settings)}))
        demo = launch(make_app(settings, backend, access), settings, None, block=False)
        chat = Client(f"http://127.0.0.1:{settings.port}/", verbose=False).predict(question, api_name="/ask")
        assert_verified(settings, chat)
        assert "2 replicas on Ray" in backend.status()

        with open(settings.corpus / "notes/1.md", "a", encoding="utf-8") as handle_file:
            handle_file.write(f"\n{NEW_FACT}\n")
        new_version = build(settings).version
        assert new_version != old_version
        moved: set[str] = set()
        deadline = time.monotonic() + 120
        with ThreadPoolExecutor(max_workers=6) as pool:
            while len(moved) < 2 and time.monotonic() < deadline:
                for reply in pool.map(
                    lambda _: ask_http(url, "What colour is the lighthouse on Gull Island?"), range(6)
                ):
                    assert reply["index_version"] == new_version  # no replica answers from the old one
                    assert_verified(settings, reply)
                    assert any(NEW_FACT in c["quote"] for c in reply["citations"])
                    moved.add(reply["replica"])
        assert moved == seen, f"{seen - moved} never answered from the new version"
    finally:
        if demo is not None:
            demo.close()
        ray_replicas.stop_replicas()


def test_a_cluster_with_no_free_cpu_stops_the_build_with_a_clear_line(cluster, tmp_path, monkeypatch):
    from rag.cluster import build as distributed_build

    @ray.remote(num_cpus=1)
    class Holder:
        def ready(self):
            return True

    settings = ray_settings(tmp_path / "full", cluster)
    distributed_build.connect(cluster.address)
    holders = [Holder.remote() for _ in range(int(ray.cluster_resources()["CPU"]))]
    try:
        ray.get([h.ready.remote() for h in holders], timeout=60)
        monkeypatch.setattr(distributed_build, "STALL_SECONDS", 5.0)
        with pytest.raises(ClusterError, match=r"CPUs may all be taken .*nothing was published"):
            distributed_build.build_on_cluster(settings)
    finally:
        for holder in holders:
            ray.kill(holder)
    assert store.current_version(settings.index) is None


def test_pdf_word_and_html_are_converted_on_the_cluster_as_a_local_build_would(cluster, tmp_path, real_embedder):
    import writers

    from rag.cluster.build import build_on_cluster
    from rag.ingest import readers

    settings = ray_settings(tmp_path / "ray", cluster)
    writers.text_pdf(
        settings.corpus / "manual.pdf",
        [["The kettle switches itself off when the water boils."], ["Descale it every four weeks with white vinegar."]],
    )
    writers.word_document(settings.corpus / "report.docx", [("h1", "Results"), ("p", "Steel kettles boiled fastest.")])
    (settings.corpus / "page.html").write_text(
        "<html><body><nav>Home</nav><main><h1>Otters</h1>"
        "<p>Sea otters hold hands while they sleep.</p></main></body></html>"
    )
    local = settings.replace(index=tmp_path / "local-index")
    build(local)
    lines: list[str] = []
    summary = build_on_cluster(settings, progress=lines.append)
    assert summary.files_converted == 3 and "converting 3 documents on the cluster" in lines
    assert_same_index(local.index, settings.index)
    remote = store.load(settings.index)
    for source in ("manual.pdf", "report.docx", "page.html"):
        sha = remote.manifest.files[source].sha256
        assert (
            readers.load_record(remote.texts_folder(source), sha).text
            == readers.load_record(store.load(local.index).texts_folder(source), sha).text
        )

"""`rag serve --ray --replicas N`: the question API as a Ray Serve deployment of N answering replicas.

Each replica holds its own `Retriever` over the index folder, which every node must see at the
same path (a shared filesystem), as it must see the corpus, whose files every quote is checked
against. A replica follows new versions exactly as `rag serve` does: it switches only to a fully
published version, and a question in flight finishes on the version it started with. The chat
page runs in this process and sends every question to the replicas; Ray Serve's HTTP proxy also
answers `POST /ask {"question": ...}` with the `rag ask --json` object.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass

from rag.answer.quotes import NO_COLLECTION
from rag.cluster.connect import connect
from rag.config import Settings
from rag.errors import ClusterError, RagError
from rag.types import Answer

log = logging.getLogger(__name__)

APP_NAME = "rag"
ROUTE = "/ask"
ANSWER_TIMEOUT = 120.0
"""Seconds the chat waits for a replica's answer before saying it failed."""


@dataclass(frozen=True)
class Replicated:
    """What one replica said: the answer, the index version it answered from, and which replica it was."""

    answer: Answer
    version: str
    replica: str


class AnswerReplica:
    """One Ray Serve replica: the model and the live index version, loaded once, followed on disk."""

    def __init__(self, settings: Settings):
        import torch

        from rag.search import Retriever

        threads = _assigned_cpus()
        torch.set_num_threads(threads)
        self.settings = settings
        self.retriever = Retriever(settings)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def ask(self, question: str, history: tuple[str, ...] = ()) -> Replicated:
        """A verified, cited answer, with the version and replica that gave it."""
        from rag.answer.quotes import answer

        self.retriever.refresh()
        version = self.retriever.index.folder.name
        return Replicated(answer(question, self.retriever, self.settings, history=list(history)), version, self.name)

    def status(self) -> dict:
        """The status line of the version this replica serves, the version, and the replica."""
        from rag.serve.render import index_line

        self.retriever.refresh()
        return {"line": index_line(self.retriever), "version": self.retriever.index.folder.name, "replica": self.name}

    async def __call__(self, request) -> dict:
        """HTTP: `POST /ask {"question": ..., "history": [...]}` → the `rag ask --json` object."""
        try:
            body = await request.json()
        except ValueError:
            body = None
        from starlette.responses import JSONResponse

        if not isinstance(body, dict) or not isinstance(body.get("question"), str):
            return JSONResponse({"error": 'send JSON like {"question": "What is ...?"}'}, status_code=400)
        history = tuple(str(h) for h in body.get("history") or ())
        try:  # in a thread, so the replica's event loop keeps answering health checks
            replied = await asyncio.to_thread(self.ask, body["question"], history)
        except RagError as error:
            return JSONResponse({"error": str(error)}, status_code=503)
        return {**replied.answer.to_dict(), "index_version": replied.version, "replica": replied.replica}


def _assigned_cpus() -> int:
    import ray

    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1) or 1))


def start_replicas(settings: Settings, replicas: int, api_port: int = 8000, cpus_per_replica: float = 1.0):
    """Deploy `replicas` AnswerReplicas on the cluster (HTTP on 127.0.0.1:`api_port` of the head); returns the handle."""
    if replicas < 1:
        raise ClusterError(f"--replicas {replicas} must be 1 or more")
    ray = connect(settings.ray_address)
    from ray import serve

    shared = settings.replace(corpus=settings.corpus.resolve(), index=settings.index.resolve())
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": api_port})
    deployment = serve.deployment(
        AnswerReplica,
        name="AnswerReplica",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica},
        # Serve's router prefers replicas on its own node; a short queue per replica sends the overflow to
        # the others instead of piling questions up behind one (each replica answers one at a time).
        max_ongoing_requests=2,
        health_check_period_s=10,
    )
    log.info("deploying %d replicas on a cluster with %s", replicas, ray.cluster_resources())
    try:
        return serve.run(deployment.bind(shared), name=APP_NAME, route_prefix=ROUTE, blocking=False)
    except Exception as error:  # a replica that cannot load the index or model fails the deployment
        raise ClusterError(
            f"the answering replicas did not start ({str(error).strip().splitlines()[-1]}); the index folder "
            f"{shared.index} and corpus {shared.corpus} must be on a filesystem every node sees at that path"
        ) from None


def stop_replicas() -> None:
    """Remove the deployment and Ray Serve from the cluster."""
    from ray import serve

    serve.shutdown()


class ReplicaBackend:
    """The chat's backend under `rag serve --ray`: questions answered by replicas, rebuilds on the cluster."""

    def __init__(self, settings: Settings, handle, replicas: int):
        self.settings, self.handle, self.replicas = settings, handle, replicas

    def answer(self, question: str, history: list[str] = (), names=(None,), scope=None) -> Answer:
        """The answer of whichever replica Ray Serve routes the question to (one corpus: `names` is its own)."""
        if scope is not None and scope.paths:
            raise ClusterError("narrowing a question to folders is not served by Ray replicas; ask without it")
        if None not in names:
            return Answer(question, NO_COLLECTION, True)
        return self.ask(question, history).answer

    def ask(self, question: str, history: list[str] = ()) -> Replicated:
        """The answer with the version and replica that gave it."""
        try:
            return self.handle.ask.remote(question, tuple(history)).result(timeout_s=ANSWER_TIMEOUT)
        except RagError:
            raise
        except Exception as error:  # a replica lost or timed out
            raise ClusterError(
                f"no replica answered ({str(error).strip().splitlines()[-1]}); check `ray status`"
            ) from None

    def pages(self, citation) -> list:
        """The rendered PDF pages of a citation, from the live version on the shared index folder."""
        from rag.index import store
        from rag.serve.page_images import cited_pages

        try:
            live = store.load(self.settings.index, search=False)
        except RagError:
            return []
        try:
            return cited_pages(self.settings.corpus, live, citation)
        finally:
            live.release()

    def settings_of(self, name=None) -> Settings:
        return self.settings

    def status(self, names=(None,)) -> str:
        """The status line one replica reports, and how many replicas answer."""
        try:
            status = self.handle.status.remote().result(timeout_s=30)
        except Exception as error:  # noqa: BLE001 - the status line must not break the page
            return f"replicas unavailable: {str(error).strip().splitlines()[-1]}"
        return f"{status['line']} · {self.replicas} replicas on Ray"

    def build(self, progress, name=None):
        """An incremental build on the cluster; the replicas pick the new version up by themselves."""
        from rag.cluster.build import build_on_cluster

        return build_on_cluster(self.settings, progress=progress)

    def refresh(self, name=None) -> None:
        """Nothing to do here: each replica checks the live version on every question."""


def serve_replicated(
    settings: Settings, replicas: int, no_auth: bool = False, block: bool = True, api_port: int = 8000
):
    """`rag serve --ray`: build on the cluster if needed, start the replicas, and serve the chat page here."""
    from rag.cluster.build import build_on_cluster
    from rag.serve.chat import make_app
    from rag.serve.launch import accounts_for, audit_of, build_if_stale, launch
    from rag.serve.library import Access, Library, Shelf

    accounts = accounts_for(settings, no_auth)
    access = Access(Library({None: Shelf(None, settings)}), accounts)
    build_if_stale(settings, build_on_cluster, " on the Ray cluster")
    handle = start_replicas(settings, replicas, api_port=api_port)
    print(f"rag: {replicas} replicas answer on Ray; HTTP API at http://127.0.0.1:{api_port}{ROUTE}", file=sys.stderr)
    backend = ReplicaBackend(settings, handle, replicas)
    if not block:
        return launch(
            make_app(settings, backend, access, audit_of(settings) if accounts else None),
            settings,
            accounts,
            block=False,
        )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so a plain `kill` also removes the replicas
    try:
        return launch(
            make_app(settings, backend, access, audit_of(settings) if accounts else None),
            settings,
            accounts,
            block=True,
        )
    finally:
        stop_replicas()

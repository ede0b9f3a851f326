"""The HTTP server every door of `rag serve` shares: the chat page, its API and the doors added beside it.

It stays private by default: it answers only to the host names it was started for (so a web page elsewhere cannot
reach it by DNS rebinding), refuses a request that changes something from another origin, forbids framing and MIME
sniffing, refuses request bodies over RAG_MAX_REQUEST_BYTES, never calls home (Gradio's analytics are off), and keeps
its temporary files (uploads in flight, exports) in one folder of its own, readable by this user alone, removed when
it stops.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rag.config import Settings, is_loopback
from rag.errors import ConfigError

CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods a page of another origin may not use here (every chat action and upload is a POST)."""
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def private_folder() -> Path:
    """A fresh folder for this server's temporary files (mode 0700), which Gradio is told to use as well."""
    folder = Path(tempfile.mkdtemp(prefix="rag-serve-"))  # mkdtemp makes it 0700
    os.environ["GRADIO_TEMP_DIR"] = str(folder / "gradio")
    return folder


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The host names a request may name: loopback's, the bound address, this machine's name when every
    address is bound, and RAG_ALLOWED_HOSTS."""
    names = {"localhost", "127.0.0.1", "::1", settings.host.strip("[]").lower()}
    if settings.host in ("0.0.0.0", "::", ""):
        names.add(socket.gethostname().lower())
    names.update(name.strip().lower() for name in settings.allowed_hosts.split(",") if name.strip())
    return frozenset(names)


def host_of(header: str) -> str:
    """The host part of a Host or Origin value: `[::1]:7860` → `::1`, `Example.org:80` → `example.org`."""
    value = header.strip().lower()
    if "://" in value:
        value = value.split("://", 1)[1].split("/", 1)[0]
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware in front of every route: Host allow-list, same-origin changes, body limit, headers."""

    def __init__(self, app, hosts: frozenset[str], max_body: int, any_address: bool = False):
        self.app, self.hosts, self.max_body, self.any_address = app, hosts, max_body, any_address

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = host_of(headers.get("host", ""))
        if not self._known(host):
            return await _refuse(
                send,
                scope,
                400,
                f"this server does not answer to the host name {host!r}; reach it as 127.0.0.1 or localhost, "
                "or add the name to RAG_ALLOWED_HOSTS",
            )
        origin = headers.get("origin")
        if scope.get("method", "GET") in CHANGING and origin and origin != "null" and host_of(origin) != host:
            return await _refuse(send, scope, 403, f"a page of another origin ({origin}) may not change anything here")
        if scope["type"] == "http" and int(headers.get("content-length") or 0) > self.max_body:
            return await _refuse(send, scope, 413, self._too_large(int(headers["content-length"])))
        return await self.app(scope, self._bounded(receive, scope), _with_headers(send))

    def _known(self, host: str) -> bool:
        if host in self.hosts:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address.is_loopback or self.any_address  # an address, unlike a name, cannot be rebound

    def _too_large(self, size: int) -> str:
        return (
            f"the request body of {size:,} bytes is over the limit of {self.max_body:,} bytes "
            "(RAG_MAX_REQUEST_BYTES); send less"
        )

    def _bounded(self, receive, scope):
        """`receive` that stops a body sent without a length once it passes the limit."""
        seen = 0

        async def bounded():
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self._too_large(seen))
            return message

        return bounded


class BodyTooLarge(Exception):
    """A request body sent without a length ran past RAG_MAX_REQUEST_BYTES; the connection is dropped."""


def _with_headers(send):
    async def sending(message):
        if message.get("type") == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            message["headers"] = list(message.get("headers", [])) + [h for h in SECURITY_HEADERS if h[0] not in present]
        await send(message)

    return sending


def refusal(path: str, message: str, code: str = "refused") -> dict:
    """The body of a refusal: `{"error": message}`, or an OpenAI-style error object on the OpenAI-compatible door."""
    if path.startswith("/v1/"):
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return {"error": message}


async def _refuse(send, scope, status: int, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps(refusal(scope.get("path", ""), message, str(status))).encode("utf-8")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + SECURITY_HEADERS})
    await send({"type": "http.response.body", "body": body})


def guarded_app(settings: Settings):
    """A FastAPI app behind the Guard, with no documentation routes of its own; doors are mounted on it."""
    from fastapi import FastAPI

    if settings.max_request_bytes < settings.max_upload_bytes:
        raise ConfigError(
            f"RAG_MAX_REQUEST_BYTES ({settings.max_request_bytes:,}) is below RAG_MAX_UPLOAD_BYTES "
            f"({settings.max_upload_bytes:,}): no upload could arrive; raise it or lower the upload limit"
        )
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    any_address = settings.host in ("0.0.0.0", "::", "")
    app.add_middleware(
        Guard, hosts=allowed_hosts(settings), max_body=settings.max_request_bytes, any_address=any_address
    )
    return app


@dataclass
class Server:
    """A running server: its port, its thread, and what `close` removes."""

    port: int
    url: str
    folder: Path | None = None
    on_close: list = field(default_factory=list)
    _uvicorn: object = None
    _thread: threading.Thread | None = None

    @property
    def server_port(self) -> int:
        return self.port

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C, SIGTERM or `close`)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def close(self) -> None:
        """Stop serving, then remove the private folder and whatever else was registered."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(30)
        for action in self.on_close:
            action()
        self.on_close.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def start(app, settings: Settings, folder: Path | None = None) -> Server:
    """Serve `app` on settings.host:settings.port in a thread; ConfigError when the port cannot be had."""
    import uvicorn

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as error:
        sock.close()
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port} ({error.strerror or error}); pass --port with a free port"
        ) from None
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", server_header=False, timeout_graceful_shutdown=5)
    runner = uvicorn.Server(config)
    runner.install_signal_handlers = lambda: None  # the caller owns the signals
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, name="rag-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not runner.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not runner.started:
        runner.should_exit = True
        raise ConfigError(f"the server on {settings.host}:{port} did not start; see the log above")
    return Server(port, local_url(settings.host, port), folder, [], runner, thread)


def local_url(host: str, port: int) -> str:
    """The address a program on this machine reaches the server at."""
    if is_loopback(host) or host in ("0.0.0.0", "::", ""):
        return f"http://127.0.0.1:{port}/"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

"""rag.serve.server: a private server by default: no outside host contacted, foreign Host names and other
origins refused, no framing, no conversation left on disk after it stops."""

from __future__ import annotations

import json
import os
import signal
import stat
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import copy_index, start_server

from rag.config import Settings
from rag.serve.server import Guard, allowed_hosts, host_of


@pytest.mark.parametrize(
    "header, host",
    [
        ("127.0.0.1:7860", "127.0.0.1"),
        ("LOCALHOST:7860", "localhost"),
        ("[::1]:7860", "::1"),
        ("example.org", "example.org"),
        ("http://evil.example:8080", "evil.example"),
        ("https://[::1]:1/x", "::1"),
        ("", ""),
    ],
)
def test_host_of(header, host):
    assert host_of(header) == host


@pytest.mark.parametrize(
    "bound, extra, host, known",
    [
        ("127.0.0.1", "", "127.0.0.1", True),
        ("127.0.0.1", "", "localhost", True),
        ("127.0.0.1", "", "127.9.9.9", True),  # any loopback address: an address cannot be rebound
        ("127.0.0.1", "", "evil.example", False),
        ("127.0.0.1", "", "192.168.1.5", False),
        ("127.0.0.1", "rag.intranet, Docs.Example", "docs.example", True),
        ("10.0.0.5", "", "10.0.0.5", True),
        ("10.0.0.5", "", "10.0.0.6", False),
        ("0.0.0.0", "", "10.0.0.6", True),  # every address bound: any address, still no foreign name
        ("0.0.0.0", "", "evil.example", False),
    ],
)
def test_which_hosts_a_server_answers_to(bound, extra, host, known):
    settings = Settings(host=bound, allowed_hosts=extra)
    guard = Guard(None, allowed_hosts(settings), 1000, any_address=bound == "0.0.0.0")
    assert guard._known(host) is known


RECORDER = textwrap.dedent(
    """
    import os, socket
    _log = os.environ["RAG_TEST_NAMES_LOG"]
    _resolve, _connect = socket.getaddrinfo, socket.socket.connect

    def _note(kind, value):
        with open(_log, "a", encoding="utf-8") as handle:
            handle.write(f"{kind} {value}\\n")

    def getaddrinfo(host, *args, **kwargs):
        _note("resolve", host)
        return _resolve(host, *args, **kwargs)

    def connect(self, address):
        _note("connect", address[0] if isinstance(address, tuple) else address)
        return _connect(self, address)

    socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
    _note("hook", os.getpid())
    """
)


@pytest.fixture(scope="module")
def watched_server(seed_settings, tmp_path_factory):
    """`rag serve` with every name it resolves and every address it connects to written down, and its temporary
    files confined to a folder of the test's."""
    root = tmp_path_factory.mktemp("private")
    settings = copy_index(seed_settings, root)
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RECORDER, encoding="utf-8")
    temp = root / "tmp"
    temp.mkdir()
    names = root / "names.log"
    env = {
        "PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "RAG_TEST_NAMES_LOG": str(names),
        "TMPDIR": str(temp),
    }
    process, url = start_server(settings, env_extra=env)
    yield settings, url, process, names, temp
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


def _get(url: str, headers: dict | None = None, data: bytes | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_a_foreign_host_name_is_refused_and_loopback_names_answer(watched_server):
    settings, url, *_ = watched_server
    status, _, body = _get(url, {"Host": "evil.example"})
    assert status == 400 and "RAG_ALLOWED_HOSTS" in json.loads(body)["error"]
    for name in ("localhost", "127.0.0.1"):
        assert _get(url, {"Host": f"{name}:{url.rsplit(':', 1)[1].strip('/')}"})[0] == 200


def test_pages_and_answers_forbid_framing_and_sniffing(watched_server):
    settings, url, *_ = watched_server
    for path in ("", "config", "gradio_api/info"):
        status, headers, _ = _get(url + path)
        lowered = {k.lower(): v for k, v in headers.items()}
        assert status == 200, path
        assert lowered["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in lowered["content-security-policy"]
        assert lowered["x-content-type-options"] == "nosniff"


def test_a_change_from_another_origin_is_refused(watched_server):
    settings, url, *_ = watched_server
    body = json.dumps({"data": ["How often should I descale the kettle?"]}).encode()
    foreign = {"Origin": "http://evil.example", "Content-Type": "application/json"}
    status, _, reply = _get(url + "gradio_api/call/ask", foreign, body)
    assert status == 403 and "another origin" in json.loads(reply)["error"]
    own = {"Origin": url.rstrip("/"), "Content-Type": "application/json"}
    assert _get(url + "gradio_api/call/ask", own, body)[0] == 200


def test_gradio_analytics_are_off(watched_server):
    settings, url, *_ = watched_server
    assert json.loads(_get(url + "config")[2])["analytics_enabled"] is False


def test_no_outside_host_is_contacted_and_nothing_of_the_conversation_stays_on_disk(watched_server):
    from gradio_client import Client

    settings, url, process, names, temp = watched_server
    question = "How often should I descale the kettle? (private-check-7f3a)"
    reply = Client(url, verbose=False).predict(question, api_name="/ask")
    assert reply["citations"]
    private = [p for p in temp.iterdir() if p.name.startswith("rag-serve-")]
    assert len(private) == 1 and stat.S_IMODE(private[0].stat().st_mode) == 0o700
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    seen = [line.split(" ", 1) for line in names.read_text(encoding="utf-8").splitlines()]
    assert ["hook", str(process.pid)] in seen  # the recorder ran inside the server
    local = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
    outside = [(kind, value) for kind, value in seen if kind != "hook" and value not in local]
    assert not outside, outside
    assert not any(temp.iterdir()), [str(p) for p in temp.rglob("*")]  # the private folder went with the server
    for folder in (temp, Path(settings.index)):
        for path in folder.rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                assert b"private-check-7f3a" not in path.read_bytes(), path

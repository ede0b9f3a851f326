"""A shared deployment: loopback by default, accounts to open it up, and a loud warning without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_index, free_port, start_server

from rag.config import Settings, is_loopback
from rag.errors import ConfigError
from rag.serve.auth import credentials

QUESTION = "In how many countries will the terrorists now solve their problems?"


# --- which hosts are loopback -------------------------------------------------------------


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.255.255.254", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.5", False),
        ("192.168.1.20", False),
        ("example.com", False),
        ("127.example.com", False),  # a name, not an address: it can resolve anywhere
        ("127.0.0.1.nip.io", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


# --- accounts -----------------------------------------------------------------------------


def settings_with(tmp_path, host="127.0.0.1", auth="", file_text: str | bytes | None = None) -> Settings:
    auth_file = ""
    if file_text is not None:
        path = tmp_path / "accounts"
        path.write_bytes(file_text if isinstance(file_text, bytes) else file_text.encode("utf-8"))
        auth_file = str(path)
    return Settings(host=host, auth=auth, auth_file=auth_file)


@pytest.mark.parametrize(
    "auth, file_text, accounts",
    [
        ("", None, None),
        ("user:pw", None, [("user", "pw")]),
        ("  user:pw  ", None, [("user", "pw")]),
        ("user:pa:ss:word", None, [("user", "pa:ss:word")]),
        ("user:pass word", None, [("user", "pass word")]),
        ("", "alice:one\nbob:two\n", [("alice", "one"), ("bob", "two")]),
        ("", "# team accounts\n\nalice:one\n   \n  # bob left\ncarol:three", [("alice", "one"), ("carol", "three")]),
        ("", "alice:one\r\nbob:two\r\n", [("alice", "one"), ("bob", "two")]),
        ("", "\ufeffalice:one\n", [("alice", "one")]),  # a BOM from a Windows editor is not part of the name
        ("", "zoë:pässwörd\n", [("zoë", "pässwörd")]),
        ("user:pw", "alice:one\n", [("user", "pw"), ("alice", "one")]),
    ],
)
def test_accounts_from_rag_auth_and_the_account_file(tmp_path, auth, file_text, accounts):
    assert credentials(settings_with(tmp_path, auth=auth, file_text=file_text)) == accounts


@pytest.mark.parametrize(
    "auth, file_text, message",
    [
        ("s3cr3t", None, "RAG_AUTH is not an account"),
        (":s3cr3t", None, "RAG_AUTH is not an account"),
        ("user:", None, "RAG_AUTH is not an account"),
        ("   :   ", None, "RAG_AUTH is not an account"),
        ("", "alice:s3cr3t\nbob\n", "line 2 of RAG_AUTH_FILE"),
        ("", "alice:s3cr3t\n:s3cr3t\n", "line 2 of RAG_AUTH_FILE"),
        ("", "# only a comment\n\n", "holds no account"),
        ("", "", "holds no account"),
        ("", b"alice:s3cr3t\xe9\n", "not UTF-8"),
    ],
)
def test_bad_accounts_are_refused_naming_where_but_never_the_password(tmp_path, auth, file_text, message):
    with pytest.raises(ConfigError, match=message) as error:
        credentials(settings_with(tmp_path, auth=auth, file_text=file_text))
    assert "s3cr3t" not in str(error.value)


def test_missing_or_unreadable_account_file_is_named(tmp_path):
    for path in (tmp_path / "no-such-file", tmp_path):  # missing, and a folder
        with pytest.raises(ConfigError, match=f"cannot read RAG_AUTH_FILE {path}"):
            credentials(Settings(auth_file=str(path)))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com", "127.example.com"])
def test_a_network_address_needs_an_account_or_no_auth(tmp_path, host):
    with pytest.raises(ConfigError, match="RAG_AUTH=user:password") as error:
        credentials(settings_with(tmp_path, host=host))
    assert "--no-auth" in str(error.value) and host in str(error.value)
    assert credentials(settings_with(tmp_path, host=host, auth="u:p")) == [("u", "p")]
    assert credentials(settings_with(tmp_path, host=host, file_text="u:p\n")) == [("u", "p")]
    assert credentials(settings_with(tmp_path, host=host), no_auth=True) is None


# --- a real server with accounts ----------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port` (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if int(port_hex, 16) == port and state == "0A":
                found.add(address)
    return found


@pytest.fixture(scope="module")
def guarded(seed_settings, tmp_path_factory):
    """`rag serve` with two accounts from RAG_AUTH_FILE and one from RAG_AUTH, on the default host."""
    root = tmp_path_factory.mktemp("guarded")
    settings = copy_index(seed_settings, root)
    accounts = root / "accounts"
    accounts.write_text("# people\nalice:s3cret:with:colons\nbob:hunter2\n", encoding="utf-8")
    process, url = start_server(settings, env_extra={"RAG_AUTH": "user:pw", "RAG_AUTH_FILE": str(accounts)})
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_serve_binds_loopback_only_by_default(guarded):
    port = int(guarded.rstrip("/").rsplit(":", 1)[1])
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else


def test_client_without_an_account_is_refused(guarded):
    import httpx
    from gradio_client import Client

    with pytest.raises(Exception, match="credentials were not provided|login"):
        Client(guarded, verbose=False)
    called = httpx.post(guarded + "gradio_api/call/ask", json={"data": [QUESTION]}, timeout=30)
    assert called.status_code == 401  # the API itself is closed, not only the page
    assert httpx.get(guarded + "config", timeout=30).status_code == 401


@pytest.mark.parametrize("auth", [("user", "wrong"), ("nobody", "pw"), ("alice", "s3cret"), ("", "")])
def test_client_with_a_wrong_account_is_refused(guarded, auth):
    from gradio_client import Client

    with pytest.raises(Exception, match="login|credentials"):
        Client(guarded, auth=auth, verbose=False)


@pytest.mark.parametrize("auth", [("user", "pw"), ("alice", "s3cret:with:colons"), ("bob", "hunter2")])
def test_client_with_an_account_gets_a_cited_answer(guarded, auth):
    from gradio_client import Client

    result = Client(guarded, auth=auth, verbose=False).predict(QUESTION, api_name="/ask")
    assert result["abstained"] is False
    assert "about 60 countries" in result["citations"][0]["quote"]


# --- the command line ---------------------------------------------------------------------


def serve_env(settings, **extra) -> dict:
    env = dict(os.environ, RAG_CORPUS=str(settings.corpus), RAG_INDEX=str(settings.index), **extra)
    for name in ("RAG_AUTH", "RAG_AUTH_FILE", "RAG_HOST"):
        if name not in extra:
            env.pop(name, None)
    return env


@pytest.mark.parametrize("host", ["0.0.0.0", "127.example.com"])
def test_serve_refuses_a_network_host_without_an_account(seed_settings, host):
    done = subprocess.run(
        [sys.executable, "-m", "rag", "serve", "--host", host, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env=serve_env(seed_settings),
    )
    assert done.returncode == 2
    assert "RAG_AUTH" in done.stderr and "--no-auth" in done.stderr and "Traceback" not in done.stderr


def test_serve_refuses_a_bad_account_file_cleanly(seed_settings, tmp_path):
    (tmp_path / "accounts").write_text("alice\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "rag", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env=serve_env(seed_settings, RAG_AUTH_FILE=str(tmp_path / "accounts")),
    )
    assert done.returncode == 2
    assert done.stderr.startswith("rag: error: line 1 of RAG_AUTH_FILE") and "Traceback" not in done.stderr


def test_no_auth_on_a_network_host_warns_loudly(seed_settings):
    """Bind 0.0.0.0 on a random port only long enough to see the warning, then kill the server."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rag", "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--no-auth"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=serve_env(seed_settings),
    )
    try:
        deadline, seen = time.monotonic() + 120, []
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "WARNING" in line:
                break
    finally:
        process.kill()
        process.wait(timeout=30)
    warning = "".join(seen)
    assert "rag: WARNING: serving 0.0.0.0 without authentication (--no-auth)" in warning


@pytest.mark.parametrize("account", ["user:pw", "alice:s3cret:with:colons"])
def test_rag_ask_logs_in_to_a_guarded_server_with_rag_auth(guarded, seed_settings, account):
    done = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "--json", "--server", guarded, QUESTION],
        capture_output=True,
        text=True,
        timeout=120,
        env=serve_env(seed_settings, RAG_AUTH=account),
    )
    assert done.returncode == 0, done.stderr
    assert "about 60 countries" in json.loads(done.stdout)["citations"][0]["quote"]


@pytest.mark.parametrize("account", [None, "user:wrong"])
def test_rag_ask_without_a_good_account_is_refused_in_one_line(guarded, seed_settings, account):
    extra = {"RAG_AUTH": account} if account else {}
    done = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "--server", guarded, QUESTION],
        capture_output=True,
        text=True,
        timeout=120,
        env=serve_env(seed_settings, **extra),
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"rag: error: the server at {guarded} ") and "Traceback" not in done.stderr
    assert (
        ("set RAG_AUTH" in done.stderr)
        if account is None
        else ("refused" in done.stderr or "did not answer" in done.stderr)
    )

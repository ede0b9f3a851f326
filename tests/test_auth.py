"""Accounts and log-ins: loopback by default, hashed accounts to open a server up, a log-in on every surface once
they exist, sessions that end, keys for programs, and a loud warning without any of it."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_index, free_port, start_server

from rag.cli import main as rag_main
from rag.config import Settings, is_loopback
from rag.errors import ConfigError
from rag.serve import accounts
from rag.serve.auth import accounts_file
from rag.serve.login import FAILURES_BEFORE_LOCK, Sessions, Throttle

QUESTION = "In how many countries will the terrorists now solve their problems?"


# --- which hosts are loopback -------------------------------------------------------------


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
        ("127.example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


# --- passwords, keys and the accounts file --------------------------------------------------


def test_a_password_is_kept_as_a_salted_slow_hash_only():
    first, second = accounts.hash_password("correct horse"), accounts.hash_password("correct horse")
    assert first != second and first.startswith("scrypt$16384$8$1$")  # salted
    assert accounts.check_password(first, "correct horse") and accounts.check_password(second, "correct horse")
    assert not accounts.check_password(first, "correct hors") and not accounts.check_password("garbage", "x")


def _cli(monkeypatch, tmp_path, *argv, password: str | None = None) -> tuple[int, str]:
    monkeypatch.setenv("RAG_INDEX", str(tmp_path / "index"))
    monkeypatch.setattr(sys, "stdin", io.StringIO((password or "") + "\n"))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    return rag_main(list(argv)), out.getvalue()


def test_rag_user_manages_accounts_and_never_writes_a_password(monkeypatch, tmp_path, capsys):
    assert (
        _cli(
            monkeypatch,
            tmp_path,
            "user",
            "add",
            "ann",
            "--role",
            "editor",
            "--collections",
            "hr,eng",
            password="a long passphrase",
        )[0]
        == 0
    )
    path = tmp_path / "index" / accounts.FILE
    text = path.read_text()
    assert "a long passphrase" not in text and stat.S_IMODE(path.stat().st_mode) == 0o600
    found = accounts.load(path)
    assert found.check("ann", "a long passphrase") and not found.check("ann", "wrong")
    assert found.users["ann"].role == "editor" and found.users["ann"].collections == ["hr", "eng"]
    code, key = _cli(monkeypatch, tmp_path, "user", "key", "ann")
    assert code == 0 and key.strip().startswith("rag_")
    assert key.strip() not in path.read_text() and accounts.load(path).by_key(key.strip()).name == "ann"
    assert _cli(monkeypatch, tmp_path, "user", "passwd", "ann", password="another passphrase")[0] == 0
    assert accounts.load(path).check("ann", "another passphrase") and not accounts.load(path).check(
        "ann", "a long passphrase"
    )
    code, listed = _cli(monkeypatch, tmp_path, "user", "list", "--json")
    assert json.loads(listed) == {
        "user": "ann",
        "role": "editor",
        "collections": ["hr", "eng"],
        "groups": [],
        "keys": 1,
    }
    assert (
        _cli(monkeypatch, tmp_path, "user", "revoke", "ann")[0] == 0 and accounts.load(path).by_key(key.strip()) is None
    )
    assert _cli(monkeypatch, tmp_path, "user", "remove", "ann")[0] == 0 and "ann" not in accounts.load(path).users


@pytest.mark.parametrize(
    "argv, password, message",
    [
        (["user", "add", "ann"], "short", "at least 8 characters"),
        (["user", "add", "../ann"], "a long passphrase", "is not a user name"),
        (["user", "remove", "nobody"], None, "no user 'nobody'"),
    ],
)
def test_bad_account_commands_are_refused_in_one_line(monkeypatch, tmp_path, capsys, argv, password, message):
    assert _cli(monkeypatch, tmp_path, *argv, password=password)[0] == 2
    assert message in capsys.readouterr().err


def test_plain_text_passwords_are_refused_with_how_to_convert_them(monkeypatch, tmp_path, capsys):
    plain = tmp_path / "old-accounts"
    plain.write_text("# team\nalice:s3cret:with:colons\nbob:hunter2\n", encoding="utf-8")
    for settings in (Settings(auth_file=str(plain)), Settings(auth="user:pw")):
        with pytest.raises(ConfigError, match="plain text.*rag user"):
            accounts_file(settings)
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / accounts.FILE).write_text(plain.read_text())  # the old file put where accounts go
    with pytest.raises(ConfigError, match="rag user import"):
        accounts_file(Settings(index=tmp_path / "index"))
    (tmp_path / "index" / accounts.FILE).unlink()
    assert _cli(monkeypatch, tmp_path, "user", "import", str(plain), "--role", "reader")[0] == 0
    converted = accounts.load(tmp_path / "index" / accounts.FILE)
    assert converted.check("alice", "s3cret:with:colons") and converted.check("bob", "hunter2")
    assert "hunter2" not in (tmp_path / "index" / accounts.FILE).read_text()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com", "127.example.com"])
def test_a_network_address_needs_accounts_or_no_auth(tmp_path, host):
    settings = Settings(host=host, index=tmp_path)
    with pytest.raises(ConfigError, match="rag user add NAME --role admin") as error:
        accounts_file(settings)
    assert "--no-auth" in str(error.value) and host in str(error.value)
    assert accounts_file(settings, no_auth=True) is None
    accounts.add_user(tmp_path / accounts.FILE, "ann", "admin", [], [], "a long passphrase")
    assert accounts_file(settings) is not None
    assert accounts_file(Settings(index=tmp_path)) is not None  # once accounts exist, loopback asks too


def test_access_follows_role_collections_and_groups(tmp_path):
    path = tmp_path / accounts.FILE
    accounts.add_user(path, "rita", "reader", ["hr"], [], "a long passphrase")
    accounts.add_user(path, "eddie", "editor", [], ["builders"], "a long passphrase")
    accounts.add_user(path, "all", "reader", ["*"], [], "a long passphrase")
    accounts.add_user(path, "root", "admin", [], [], "a long passphrase")
    accounts.set_group(path, "builders", ["eng", "docs"])
    known = accounts.load(path)
    names = ["hr", "eng", "docs"]
    assert known.collections_of("rita", names) == ["hr"]
    assert known.collections_of("eddie", names) == ["eng", "docs"]
    assert known.collections_of("all", names) == names and known.collections_of("root", names) == names
    assert known.collections_of("nobody", names) == []
    assert not known.may_edit("rita", "hr", names) and known.may_edit("eddie", "eng", names)
    assert not known.may_edit("eddie", "hr", names) and known.may_edit("root", "hr", names)


# --- sessions and lock-out ------------------------------------------------------------------


def test_a_session_ends_when_forged_expired_changed_removed_or_logged_out(tmp_path, monkeypatch):
    path = tmp_path / accounts.FILE
    accounts.add_user(path, "ann", "reader", [], [], "a long passphrase")
    sessions = Sessions(hours=1)
    token = sessions.make(accounts.load(path).users["ann"])
    assert sessions.user(token, accounts.load(path)).name == "ann"
    body, _, signature = token.partition(".")
    assert sessions.user(body + "." + "0" * len(signature), accounts.load(path)) is None  # forged
    assert Sessions(hours=1).user(token, accounts.load(path)) is None  # another server's secret
    monkeypatch.setattr(time, "time", lambda: 1e12)
    assert sessions.user(token, accounts.load(path)) is None  # expired
    monkeypatch.undo()
    accounts.set_password(path, "ann", "a new passphrase")
    assert sessions.user(token, accounts.load(path)) is None  # the password changed
    fresh = sessions.make(accounts.load(path).users["ann"])
    sessions.end(fresh)
    assert sessions.user(fresh, accounts.load(path)) is None  # logged out
    again = sessions.make(accounts.load(path).users["ann"])
    accounts.remove_user(path, "ann")
    assert sessions.user(again, accounts.load(path)) is None  # removed


def test_failed_log_ins_are_slowed_then_locked():
    throttle = Throttle()
    waits = [throttle.failed("user:ann", "address:1.2.3.4") for _ in range(FAILURES_BEFORE_LOCK)]
    assert waits == sorted(waits) and waits[0] < waits[-1] <= 4
    assert throttle.locked("user:ann") > 60
    assert throttle.locked("address:1.2.3.4") == 0  # an address is slowed, never locked: many may share it
    assert throttle.locked("user:bob") == 0
    throttle.succeeded("user:bob")


# --- a real server with accounts ------------------------------------------------------------


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
    """`rag serve` on the default host with an accounts file: a reader, an editor, and one to lock out."""
    root = tmp_path_factory.mktemp("guarded")
    settings = copy_index(seed_settings, root)
    path = settings.index / accounts.FILE
    accounts.add_user(path, "alice", "reader", [], [], "s3cret:with:colons")
    accounts.add_user(path, "bob", "editor", [], [], "hunter2-hunter2")
    accounts.add_user(path, "mallory", "reader", [], [], "never-guessed-1")
    key = accounts.make_key(path, "alice")
    process, url = start_server(settings)
    yield settings, url, key
    process.terminate()
    process.wait(timeout=30)


def test_serve_binds_loopback_only_by_default(guarded):
    settings, url, key = guarded
    assert listening_addresses(int(url.rstrip("/").rsplit(":", 1)[1])) == {"0100007F"}  # 127.0.0.1 alone


def test_without_a_log_in_nothing_answers_even_on_loopback(guarded):
    import httpx
    from gradio_client import Client

    settings, url, key = guarded
    with pytest.raises(Exception, match="credentials were not provided|login|401"):
        Client(url, verbose=False)
    assert httpx.post(url + "gradio_api/call/ask", json={"data": [QUESTION]}, timeout=30).status_code == 401
    assert httpx.get(url + "config", timeout=30).status_code == 401
    page = httpx.get(url, headers={"accept": "text/html"}, timeout=30)
    assert page.status_code == 303 and page.headers["location"] == "/login"
    forged = httpx.get(url + "config", cookies={"rag_session": "eyJ1IjogImFsaWNlIn0.0000"}, timeout=30)
    assert forged.status_code == 401


@pytest.mark.parametrize("auth", [("alice", "wrong"), ("nobody", "pw"), ("alice", "s3cret"), ("", "")])
def test_a_wrong_account_is_refused(guarded, auth):
    from gradio_client import Client

    settings, url, key = guarded
    with pytest.raises(Exception, match="login|credentials"):
        Client(url, auth=auth, verbose=False)


@pytest.mark.parametrize("auth", [("alice", "s3cret:with:colons"), ("bob", "hunter2-hunter2")])
def test_an_account_gets_a_cited_answer(guarded, auth):
    from gradio_client import Client

    settings, url, key = guarded
    result = Client(url, auth=auth, verbose=False).predict(QUESTION, api_name="/ask")
    assert result["abstained"] is False and "about 60 countries" in result["citations"][0]["quote"]


def test_an_api_key_answers_and_a_revoked_one_does_not(guarded):
    import httpx
    from gradio_client import Client

    settings, url, key = guarded
    result = Client(url, headers={"Authorization": f"Bearer {key}"}, verbose=False).predict(QUESTION, api_name="/ask")
    assert "about 60 countries" in result["citations"][0]["quote"]
    wrong = key[:-4] + "AAAA"
    assert httpx.get(url + "config", headers={"Authorization": f"Bearer {wrong}"}, timeout=30).status_code == 401


def test_repeated_failures_lock_the_account_out_and_the_audit_log_says_so(guarded):
    import httpx

    settings, url, key = guarded
    codes = [
        httpx.post(url + "login", data={"username": "mallory", "password": f"guess {n}"}, timeout=60).status_code
        for n in range(FAILURES_BEFORE_LOCK + 1)
    ]
    assert codes[:FAILURES_BEFORE_LOCK] == [401] * FAILURES_BEFORE_LOCK and codes[-1] == 429
    right = httpx.post(url + "login", data={"username": "mallory", "password": "never-guessed-1"}, timeout=60)
    assert right.status_code == 429 and "try again in" in right.json()["error"]  # locked, even with the password
    events = [json.loads(line) for line in (settings.index / "audit.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "login failed" and e["user"] == "mallory" for e in events) == FAILURES_BEFORE_LOCK
    assert any(e["event"] == "login refused" and e["user"] == "mallory" for e in events)


def test_log_out_and_a_removed_user_end_the_session(guarded):
    import httpx

    settings, url, key = guarded
    accounts.add_user(settings.index / accounts.FILE, "temp", "reader", [], [], "temporary-pass")
    with httpx.Client(base_url=url, timeout=60) as browser:
        assert browser.post("login", data={"username": "temp", "password": "temporary-pass"}).status_code == 200
        token = browser.cookies["rag_session"]
        assert browser.get("config").status_code == 200
        browser.get("logout")
    assert httpx.get(url + "config", cookies={"rag_session": token}, timeout=30).status_code == 401  # ended
    with httpx.Client(base_url=url, timeout=60) as browser:
        browser.post("login", data={"username": "temp", "password": "temporary-pass"})
        assert browser.get("config").status_code == 200
        accounts.remove_user(settings.index / accounts.FILE, "temp")
        assert browser.get("config").status_code == 401  # removed while logged in


# --- the command line -----------------------------------------------------------------------


def serve_env(settings, **extra) -> dict:
    env = dict(os.environ, RAG_CORPUS=str(settings.corpus), RAG_INDEX=str(settings.index), **extra)
    for name in ("RAG_AUTH", "RAG_AUTH_FILE", "RAG_HOST", "RAG_API_KEY", "RAG_ACCOUNTS"):
        if name not in extra:
            env.pop(name, None)
    return env


@pytest.mark.parametrize("host", ["0.0.0.0", "127.example.com"])
def test_serve_refuses_a_network_host_without_accounts(seed_settings, tmp_path, host):
    done = subprocess.run(
        [sys.executable, "-m", "rag", "serve", "--host", host, "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env=serve_env(seed_settings, RAG_ACCOUNTS=str(tmp_path / "none.json")),
    )
    assert done.returncode == 2
    assert "rag user add" in done.stderr and "--no-auth" in done.stderr and "Traceback" not in done.stderr


def test_serve_refuses_plain_text_accounts_cleanly(seed_settings, tmp_path):
    (tmp_path / "accounts").write_text("alice:secret\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "rag", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env=serve_env(seed_settings, RAG_AUTH_FILE=str(tmp_path / "accounts")),
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("rag: error: RAG_AUTH_FILE=") and f"rag user import {tmp_path}" in done.stderr


def test_no_auth_on_a_network_host_warns_loudly(seed_settings, tmp_path):
    """Bind 0.0.0.0 on a random port only long enough to see the warning, then kill the server."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rag", "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--no-auth"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=serve_env(seed_settings, RAG_ACCOUNTS=str(tmp_path / "none.json")),
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
    assert "rag: WARNING: serving 0.0.0.0 without authentication (--no-auth)" in "".join(seen)


def test_rag_ask_reaches_a_guarded_server_with_its_api_key(guarded, seed_settings):
    settings, url, key = guarded
    done = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "--json", "--server", url, QUESTION],
        capture_output=True,
        text=True,
        timeout=120,
        env=serve_env(seed_settings, RAG_API_KEY=key),
    )
    assert done.returncode == 0, done.stderr
    assert "about 60 countries" in json.loads(done.stdout)["citations"][0]["quote"]


@pytest.mark.parametrize("key", [None, "rag_0000_wrong"])
def test_rag_ask_without_a_good_key_is_refused_in_one_line(guarded, seed_settings, key):
    settings, url, _ = guarded
    extra = {"RAG_API_KEY": key} if key else {}
    done = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "--server", url, QUESTION],
        capture_output=True,
        text=True,
        timeout=120,
        env=serve_env(seed_settings, **extra),
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"rag: error: the server at {url} refused the question (HTTP 401)")
    assert "RAG_API_KEY" in done.stderr and "Traceback" not in done.stderr

"""Logging in: once an accounts file exists, every request names its user, loopback included.

A user is known by a session cookie (signed with a secret of this server process, so a forged or edited cookie is
refused; it expires after RAG_SESSION_HOURS and as soon as the account's password or rights change or the account
is removed), by an API key (`Authorization: Bearer rag_…`), or, behind a company's single sign-on, by the user name
a trusted reverse proxy puts in RAG_PROXY_USER_HEADER (accepted only from RAG_TRUSTED_PROXIES). Failed log-ins are
slowed, and a name or address that keeps failing is locked out for a while. `/login` is what `gradio_client`'s
`Client(url, auth=(user, password))` posts to; `/logout` ends the session.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
import urllib.parse
from pathlib import Path

from rag.serve import accounts as store
from rag.serve.server import refusal

FAILURES_BEFORE_LOCK = 5
LOCK_SECONDS = 15 * 60
"""How long a name or address is locked out after FAILURES_BEFORE_LOCK failures in a row."""
COOKIE = "rag_session"
OPEN_PATHS = frozenset({"/login", "/logout", "/favicon.ico"})


class Throttle:
    """Failed log-ins by user name and by address: each failure waits longer, by whichever has failed more; too
    many lock the user name out (never a whole address, which many users may share)."""

    def __init__(self):
        self._failures: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def locked(self, *keys: str) -> float:
        """Seconds left on the longest lock-out among `keys` (0 when none is locked)."""
        now = time.monotonic()
        with self._lock:
            return max([0.0] + [until - now for _, until in (self._failures.get(k, (0, 0.0)) for k in keys)])

    def failed(self, user: str, address: str) -> float:
        """Count a failure against the user name (locked after FAILURES_BEFORE_LOCK) and the address (slowed only);
        the seconds to wait before answering."""
        with self._lock:
            counts = []
            for key, locks in ((user, True), (address, False)):
                n = self._failures.get(key, (0, 0.0))[0] + 1
                until = time.monotonic() + LOCK_SECONDS if locks and n >= FAILURES_BEFORE_LOCK else 0.0
                self._failures[key] = (n, until)
                counts.append(n)
        return min(4.0, 0.25 * 2 ** (min(max(counts), 16) - 1))

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


class Sessions:
    """Signed session tokens: user name, the account's fingerprint and an expiry, under this process's secret."""

    def __init__(self, hours: float):
        self._secret = secrets.token_bytes(32)
        self.seconds = max(1, int(hours * 3600))
        self._ended: set[str] = set()
        """Signatures of sessions logged out before they expired."""

    def make(self, user: store.User) -> str:
        expiry = int(time.time()) + self.seconds
        body = json.dumps({"u": user.name, "f": user.fingerprint(), "e": expiry, "n": secrets.token_hex(8)})
        encoded = base64.urlsafe_b64encode(body.encode("utf-8")).decode("ascii")
        return f"{encoded}.{self._sign(encoded)}"

    def user(self, token: str, accounts: store.Accounts) -> store.User | None:
        """The account a token stands for, or None when it is forged, expired, or the account changed."""
        encoded, _, signature = (token or "").partition(".")
        if not encoded or not hmac.compare_digest(signature, self._sign(encoded)) or signature in self._ended:
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(encoded.encode("ascii")))
        except ValueError:
            return None
        user = accounts.users.get(body.get("u", ""))
        if user is None or body.get("e", 0) < time.time() or body.get("f") != user.fingerprint():
            return None
        return user

    def end(self, token: str) -> None:
        """Log a session out: its token is refused from now on, wherever it was copied to."""
        self._ended.add((token or "").partition(".")[2])

    def _sign(self, encoded: str) -> str:
        return hmac.new(self._secret, encoded.encode("ascii"), hashlib.sha256).hexdigest()


class AccountsFile:
    """The accounts file, read again whenever it changes on disk (a removed user is refused at once)."""

    def __init__(self, path: Path):
        self.path, self._seen, self._accounts = Path(path), None, None

    def get(self) -> store.Accounts | None:
        try:
            info = self.path.stat()
            seen = (info.st_mtime_ns, info.st_size, info.st_ino)
        except FileNotFoundError:
            seen = None
        if seen != self._seen or self._accounts is None and seen is not None:
            self._accounts, self._seen = store.load(self.path), seen
        return self._accounts


class Login:
    """ASGI middleware that names the user of every request (`scope["rag_user"]`) or refuses it, and serves the
    log-in and log-out pages."""

    def __init__(
        self,
        app,
        accounts: AccountsFile,
        sessions: Sessions,
        audit,
        proxy_header: str = "",
        trusted_proxies: frozenset[str] = frozenset(),
    ):
        self.app, self.accounts, self.sessions, self.audit = app, accounts, sessions, audit
        self.proxy_header, self.trusted_proxies = proxy_header.lower(), trusted_proxies
        self.throttle = Throttle()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        accounts = self.accounts.get()
        if accounts is None:  # no accounts file: one person's server on loopback
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == "/login":
            return await self._login(scope, receive, send, accounts)
        user = self._user(scope, accounts)
        if path == "/logout":
            if user is not None:
                self.audit.write("logout", user.name)
                self.sessions.end(_cookies(scope).get(COOKIE, ""))
            return await _redirect(send, "/login", clear=True)
        if user is None:
            if path in OPEN_PATHS:
                return await self.app(scope, receive, send)
            return await _ask_to_log_in(scope, send)
        scope["rag_user"] = user.name
        return await self.app(scope, receive, send)

    def _user(self, scope, accounts: store.Accounts) -> store.User | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = (scope.get("client") or ("", 0))[0]
        if self.proxy_header and client in self.trusted_proxies and headers.get(self.proxy_header):
            return accounts.users.get(headers[self.proxy_header].strip())
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return accounts.by_key(authorization[7:].strip())
        return self.sessions.user(_cookies(scope).get(COOKIE, ""), accounts)

    async def _login(self, scope, receive, send, accounts: store.Accounts):
        if scope.get("method") != "POST":
            return await _page(send, 200, _login_page(""))
        form = await _form(receive)
        name, password = form.get("username", "").strip(), form.get("password", "")
        client = (scope.get("client") or ("", 0))[0]
        keys = (f"user:{name}", f"address:{client}")
        wants_json = "html" not in dict(scope.get("headers", [])).get(b"accept", b"").decode("latin-1")
        locked = self.throttle.locked(keys[0])
        if locked > 0:
            self.audit.write("login refused", name, reason="locked", address=client)
            message = f"too many failed log-ins: try again in {int(locked // 60) + 1} minutes"
            return await (
                _json(send, 429, {"error": message}) if wants_json else _page(send, 429, _login_page(message))
            )
        user = await asyncio.to_thread(accounts.check, name, password)
        if user is None:
            await asyncio.sleep(self.throttle.failed(*keys))
            self.audit.write("login failed", name, address=client)
            message = "wrong user name or password"
            return await (
                _json(send, 401, {"error": message}) if wants_json else _page(send, 401, _login_page(message))
            )
        self.throttle.succeeded(*keys)
        self.audit.write("login", user.name, address=client)
        cookie = (
            f"{COOKIE}={self.sessions.make(user)}; Path=/; HttpOnly; SameSite=Strict; Max-Age={self.sessions.seconds}"
        )
        if wants_json:
            return await _json(send, 200, {"success": True}, [(b"set-cookie", cookie.encode("latin-1"))])
        return await _redirect(send, "/", cookie=cookie)


def _cookies(scope) -> dict[str, str]:
    found = {}
    for key, value in scope.get("headers", []):
        if key.lower() == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, content = part.strip().partition("=")
                found[name] = content
    return found


async def _form(receive) -> dict[str, str]:
    body, more = b"", True
    while more and len(body) < 64_000:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}


async def _json(send, status: int, payload: dict, headers: list | None = None) -> None:
    body = json.dumps(payload).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _page(send, status: int, page: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": page.encode("utf-8")})


async def _redirect(send, location: str, cookie: str = "", clear: bool = False) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"cache-control", b"no-store")]
    if cookie:
        headers.append((b"set-cookie", cookie.encode("latin-1")))
    if clear:
        headers.append((b"set-cookie", f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0".encode("latin-1")))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _ask_to_log_in(scope, send) -> None:
    accept = dict(scope.get("headers", [])).get(b"accept", b"").decode("latin-1")
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
    elif scope.get("method") == "GET" and "text/html" in accept:
        await _redirect(send, "/login")
    else:
        await _json(
            send,
            401,
            refusal(
                scope.get("path", ""),
                "log in first: POST /login with username and password, or send an API key "
                "as `Authorization: Bearer rag_…` (`rag user key NAME` makes one)",
                "invalid_api_key",
            ),
        )


def _login_page(message: str) -> str:
    note = f"<p class='error' role='alert'>{html.escape(message)}</p>" if message else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>rag — log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto;padding:0 1rem}}
label,input,button{{display:block;width:100%;margin:.4rem 0;font-size:1rem}}input{{padding:.4rem}}
.error{{color:#a00}}</style></head><body><h1>rag</h1><p>Log in to ask your documents.</p>{note}
<form method="post" action="/login"><label>User name <input name="username" autocomplete="username" required
autofocus></label><label>Password <input name="password" type="password" autocomplete="current-password"
required></label><button type="submit">Log in</button></form></body></html>"""

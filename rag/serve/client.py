"""Asking a running `rag serve` instead of loading the model: the runtime file a server leaves in its
index folder, and the `/ask` call over plain HTTP (standard library only, so the fast path of
`rag ask` imports neither torch nor a web framework)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from rag.config import Settings
from rag.errors import RagError

RUNTIME = ".server.json"
"""Written into the index folder by `rag serve` while it answers; removed when it stops."""
ANSWERING_STAGES = ("retrieval", "answer")
"""Settings that shape an answer: a server is asked only when its own agree with the caller's."""


class ServerUnavailable(RagError):
    """The server named by `--server` or the runtime file could not answer."""


def answering_settings(settings: Settings) -> dict:
    """The retrieval and answer settings, plus the corpus, as plain JSON values."""
    shaped = {name: value for stage in ANSWERING_STAGES for name, value in settings.stage(stage).items()}
    shaped["corpus"] = str(Path(settings.corpus).resolve())
    return json.loads(json.dumps(shaped, default=str))


def announce(settings: Settings, url: str) -> Path:
    """Record that this process serves `settings.index` at `url` (atomically, readable by `rag ask`)."""
    record = {"url": url, "pid": os.getpid(), "started": time.time(), "settings": answering_settings(settings)}
    path = Path(settings.index) / RUNTIME
    tmp = path.with_name(f".{RUNTIME}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, path)
    return path


def withdraw(settings: Settings) -> None:
    """Remove the runtime file if this process wrote it."""
    path = Path(settings.index) / RUNTIME
    record = _read(path)
    if record and record.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def find_server(settings: Settings) -> str | None:
    """The URL of a live `rag serve` of this index whose answers would be the same as ours, or None."""
    record = _read(Path(settings.index) / RUNTIME)
    if not record or not isinstance(record.get("url"), str) or not _alive(record.get("pid")):
        return None
    if record.get("settings") != answering_settings(settings):
        return None  # another corpus or other answer settings: its answer would not be ours
    return record["url"]


def _read(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def ask_server(url: str, question: str, key: str = "", collections=(), scope: str = "", timeout: float = 120.0) -> dict:
    """The `rag ask --json` object for `question`, answered by the server at `url` from `collections` (all the
    caller may read when empty) inside `scope`; `key` is an API key for a server with accounts (RAG_API_KEY)."""
    base = url if url.endswith("/") else url + "/"
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
    body = json.dumps({"data": [question, ",".join(collections), scope or ""]}).encode("utf-8")
    try:
        request = urllib.request.Request(base + "gradio_api/call/ask", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            event = json.loads(response.read().decode("utf-8"))
        request = urllib.request.Request(base + f"gradio_api/call/ask/{event['event_id']}", headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            stream = response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        hint = "; set RAG_API_KEY to a key of yours (`rag user key NAME`)" if error.code in (401, 403) else ""
        raise ServerUnavailable(f"the server at {base} refused the question (HTTP {error.code}){hint}") from None
    except (OSError, ValueError, KeyError) as error:
        raise ServerUnavailable(f"the server at {base} did not answer ({error}); is `rag serve` running?") from None
    return _completed(stream, base)


def _completed(stream: str, base: str) -> dict:
    """The answer in a finished server-sent event stream, or ServerUnavailable saying what came instead."""
    event, data = "", ""
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data = line.split(":", 1)[1].strip()
    if event != "complete":
        raise ServerUnavailable(f"the server at {base} could not answer (event {event or 'none'}: {data[:200]})")
    try:
        return json.loads(data)[0]
    except (ValueError, IndexError, TypeError):
        raise ServerUnavailable(f"the server at {base} sent an answer that is not JSON: {data[:200]}") from None

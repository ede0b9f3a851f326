"""The audit log: one JSON line per log-in (and failure), question, upload, delete and rebuild, appended under a
lock so that concurrent writers never interleave; `rag audit` reads it back, filtered."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

FILE = "audit.jsonl"


class Audit:
    """Where events are written; `questions` False leaves the question text out (RAG_AUDIT_QUESTIONS=false)."""

    def __init__(self, path: Path | None, questions: bool = True):
        self.path, self.questions = (Path(path) if path else None), questions

    def write(self, event: str, user: str | None, **facts) -> None:
        """Append one event (nothing when the log is off); a question's text only when questions are logged."""
        if self.path is None:
            return
        if not self.questions:
            facts.pop("question", None)
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event, "user": user, **facts}
        line = (json.dumps(record) + "\n").encode("ascii")  # escaped: a lone surrogate in a question stays writable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            os.write(descriptor, line)
        finally:
            os.close(descriptor)


def read(path: Path, user: str = "", collection: str = "", since: str = "", until: str = "") -> Iterator[dict]:
    """The events of the log that match every filter given (times as ISO text: `2026-12-05` or `2026-12-05T10:00`)."""
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if user and record.get("user") != user:
                continue
            if collection and collection not in (record.get("collections") or [record.get("collection")]):
                continue
            stamp = record.get("time", "")
            if (since and stamp < since) or (until and stamp[: len(until)] > until):
                continue
            yield record

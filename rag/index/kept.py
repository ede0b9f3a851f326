"""Earlier versions of documents replaced through the chat, kept in the index folder by sha256 until no version
of the index lists them: while a replaced document's new version is being indexed, answers still quote (and the
chat still draws) the version they were indexed from, verified against these very bytes."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

KEPT = "kept"


def keep(root: Path, path: Path) -> str:
    """Copy the file at `path` into the index's kept folder under its sha256 (readable by this user alone)."""
    data = Path(path).read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    folder = Path(root) / KEPT
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = folder / sha256
    if not target.exists():
        tmp = folder / f".{uuid.uuid4().hex}.part"
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    return sha256


def kept_bytes(root: Path, sha256: str) -> bytes | None:
    """The kept copy of the document with this sha256, or None."""
    path = Path(root) / KEPT / sha256
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha256 else None


def collect(root: Path, listed: set[str]) -> None:
    """Remove the kept copies no remaining version lists (and unfinished copies)."""
    for path in (Path(root) / KEPT).glob("*"):
        if path.name not in listed:
            path.unlink(missing_ok=True)

"""Files that survive a crash: fsync of files and folders, names that sort in creation order, and files read
in small pieces by offset."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path


class RowFile:
    """A file read in small pieces with `pread`, closed when no longer referenced.

    A memory map would do the same, but every row read through one maps whole cached blocks of
    the file into the server, and a large index's resident memory would grow with every question.
    """

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_RDONLY)

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def __del__(self):
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder`, then `folder` itself."""
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        (fsync_file if path.is_file() else fsync_dir)(path)
    fsync_dir(folder)


def new_name(prefix: str) -> str:
    """A folder name that sorts in creation order, also within one second: `<prefix>-<time>-<ns>-<id>`."""
    now = time.time_ns()
    return (
        f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now // 10**9))}-{now % 10**9:09d}-{uuid.uuid4().hex[:4]}"
    )

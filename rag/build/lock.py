"""One build at a time per index folder: an exclusive lock that a second build waits for, then refuses."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

from rag.errors import BuildLocked

log = logging.getLogger(__name__)


@contextmanager
def build_lock(root: Path, timeout: float):
    """Hold the index folder's lock; wait up to `timeout` seconds for another build, then refuse."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / ".lock"
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    raise BuildLocked(
                        f"another build ({holder}) is writing {root}; wait for it to finish and run `rag build` again"
                    ) from None
                if not told:
                    log.warning("another build is writing %s; waiting for it", root)
                    told = True
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)

"""A reader for tests of the child process: hangs on b"hang-me", dies on b"crash-me", else reads for real."""

from __future__ import annotations

import os
import time

from rag.ingest.readers import read as real_read


def read(kind: str, data: bytes):
    if b"hang-me" in data:
        time.sleep(3600)
    if b"crash-me" in data:
        os._exit(3)
    return real_read(kind, data)

"""A reader for tests of the child process: hangs on b"hang-me", dies on b"crash-me", reports progress for a while
on b"report-me" (as a long scan does), else reads for real."""

from __future__ import annotations

import os
import time

from rag.ingest.readers import read as real_read
from rag.ingest.readers import report


def read(kind: str, data: bytes, **options):
    if b"hang-me" in data:
        time.sleep(3600)
    if b"crash-me" in data:
        os._exit(3)
    if b"report-me" in data:
        for step in range(8):
            report(f"step {step + 1} of 8")
            time.sleep(0.5)
        return "read after 4 s of steps"
    return real_read(kind, data, **options)

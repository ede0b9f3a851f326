"""Readers run in a child process, so a file that hangs or crashes its reader cannot hang or crash the build.

The child is a fresh interpreter (`python -m rag.ingest.readers.worker`, never a fork: the build process
may hold torch's and OpenMP's threads, and no caller needs a `__main__` guard), reused file after
file; one that runs past the time limit is killed and the next file gets a fresh child.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import time

from rag.ingest import readers
from rag.ingest.readers import TextRecord, Unreadable

log = logging.getLogger(__name__)

STARTUP_SECONDS = 120
"""How long a new reader process may take to import its libraries (a loaded machine is slow)."""
MEMORY_LIMIT = 8 << 30
"""Address space a reader child may use; a file that needs more is named, not allowed to exhaust the machine."""


def _send(stream, value) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream):
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the reader process ended")
    (size,) = struct.unpack("<Q", head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the reader process ended mid-answer")
    return pickle.loads(data)


def _serve(reader: str) -> None:
    """The child's loop: read (kind, bytes) from stdin, answer ("ok", record) or ("unreadable", reason)."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    except (ImportError, ValueError, OSError):
        pass
    parent = os.getppid()

    def orphaned():  # a build killed outright must not leave its reader running on
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=orphaned, name="rag-reader-parent", daemon=True).start()
    module, _, name = reader.partition(":")
    read = getattr(importlib.import_module(module), name)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a library that prints must not corrupt the answers
    readers.progress_sink = lambda message: _send(sink, ("progress", message))
    _send(sink, ("ready", None))  # the time limit counts from here: starting up is not reading a file
    while True:
        try:
            job = _receive(source)
        except EOFError:
            return
        if job is None:
            return
        kind, data, options = job
        try:
            answer = ("ok", read(kind, data, **options))
        except Unreadable as error:
            answer = ("unreadable", str(error))
        except MemoryError:
            answer = ("unreadable", f"reading it needs more than {MEMORY_LIMIT >> 30} GiB of memory; not indexed")
        except Exception as error:  # a reader's own bug or a library failure: name it, go on
            answer = ("unreadable", f"the {kind} reader failed on it ({type(error).__name__}: {error})")
        _send(sink, answer)


class Extractor:
    """Converts documents in a child process with a time limit per file, restarted by each report of progress
    (a scan's page), so a long OCR goes on while a hung reader is still stopped."""

    def __init__(self, timeout: float, reader: str = "rag.ingest.readers:read", ocr=None):
        self.timeout = timeout
        self.options = {"ocr": ocr} if ocr is not None else {}
        """Keywords the child's reader is called with besides (kind, data): how scanned pages are read."""
        self.reader = reader
        """`module:function` the child calls with (kind, data); tests put a hanging one here."""
        self.seconds = 0.0
        """Wall time spent converting, for the build summary and bench/."""
        self._process: subprocess.Popen | None = None

    def read(self, kind: str, data: bytes, on_progress=None) -> TextRecord | str:
        """The text of record of `data`, or the reason it cannot be had; `on_progress(message)` hears the reader's
        reports of progress."""
        started = time.perf_counter()
        try:
            return self._read(kind, data, on_progress)
        finally:
            self.seconds += time.perf_counter() - started

    def _read(self, kind: str, data: bytes, on_progress) -> TextRecord | str:
        if self._process is None or self._process.poll() is not None:
            try:
                self._start()
            except (OSError, EOFError) as error:
                return f"the {kind} reader could not be started ({error}); build again"
        answer: list = []
        process = self._process
        heard = [time.monotonic()]

        def exchange():
            try:
                _send(process.stdin, (kind, data, self.options))
                while not answer:
                    status, value = _receive(process.stdout)
                    if status != "progress":
                        answer.append((status, value))
                    else:
                        heard[0] = time.monotonic()
                        if on_progress is not None:
                            on_progress(value)
            except (EOFError, OSError, pickle.UnpicklingError) as error:
                answer.append(("crashed", str(error)))

        talk = threading.Thread(target=exchange, name="rag-reader-io", daemon=True)
        talk.start()
        while talk.is_alive() and time.monotonic() - heard[0] < self.timeout:
            talk.join(max(0.01, heard[0] + self.timeout - time.monotonic()))
        if talk.is_alive():
            self._kill()
            talk.join(5)
            return (
                f"reading it took longer than {self.timeout:g} s (RAG_EXTRACT_TIMEOUT; for a scan, a page), so it was "
                f"stopped; the file may be damaged, or raise the limit"
            )
        status, value = answer[0]
        if status == "crashed":
            self._kill()
            return f"the {kind} reader crashed on it; the file is probably damaged"
        return value

    def _start(self) -> None:
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "rag.ingest.readers.worker", self.reader],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
        )
        ready: list = []
        waiting = threading.Thread(target=lambda: ready.append(_receive(self._process.stdout)), daemon=True)
        waiting.start()
        waiting.join(STARTUP_SECONDS)
        if not ready:
            self._kill()
            raise OSError(f"the reader process did not start within {STARTUP_SECONDS} s")

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass

    def close(self) -> None:
        """Stop the child (politely, then for good)."""
        process = self._process
        if process is not None and process.poll() is None:
            try:
                _send(process.stdin, None)
                process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self._kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    _serve(sys.argv[1] if len(sys.argv) > 1 else "rag.ingest.readers:read")

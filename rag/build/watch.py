"""Follow the corpus folder: debounce bursts of changes, then rebuild incrementally."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from rag.build.indexer import build, is_stale
from rag.build.summary import BuildSummary
from rag.config import Settings
from rag.embed.embedder import Embedder
from rag.errors import RagError

log = logging.getLogger(__name__)

DEBOUNCE_MS = 1500


def watch_forever(
    settings: Settings,
    report: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    on_build: Callable[[BuildSummary], None] | None = None,
    embedder_factory: Callable[[str], Embedder] | None = None,
) -> None:
    """Build once, then rebuild after every burst of changes until `stop` is set (or Ctrl-C)."""
    from watchfiles import watch

    def rebuild() -> None:
        try:
            summary = build(settings, embedder_factory=embedder_factory)
        except RagError as error:  # a bad moment (say, a half-copied folder) must not end the watch
            report(f"build failed, index unchanged: {error}")
            return
        report(summary.line())
        if on_build:
            on_build(summary)

    rebuild()
    report(f"watching {settings.corpus} for changes (Ctrl-C to stop)")
    started = False
    for changes in watch(
        settings.corpus,
        debounce=DEBOUNCE_MS,
        stop_event=stop,
        raise_interrupt=False,
        yield_on_timeout=True,
        rust_timeout=1000,
    ):
        if changes or (not started and is_stale(settings)):
            rebuild()  # the first quiet tick catches what changed while the watcher was starting
        started = True


def start_watch_thread(settings: Settings, on_build=None) -> threading.Event:
    """Watch in a daemon thread (for `rag serve --watch`); set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=watch_forever,
        args=(settings, lambda message: log.warning("%s", message), stop, on_build),
        name="rag-watch",
        daemon=True,
    )
    thread.start()
    return stop


def watch_all(shelves: list[tuple[str | None, Settings]], report: Callable[[str], None] = print) -> None:
    """Watch several collections' folders at once, each rebuilt on its own; one failing never stops another."""
    if len(shelves) == 1:
        watch_forever(shelves[0][1], report=report)
        return
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=watch_forever,
            args=(settings, lambda message, name=name: report(f"{name}: {message}"), stop),
            name=f"rag-watch-{name}",
            daemon=True,
        )
        for name, settings in shelves
    ]
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(0.5)
    except KeyboardInterrupt:
        stop.set()

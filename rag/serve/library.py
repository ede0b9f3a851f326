"""What one server answers from, and who may see what: a retriever per collection, loaded and rebuilt
independently (one collection's failure never stops another's answers), and each user's collections.

Every door asks `Access` for the collections a user may read and hands `answer` those retrievers alone, so a
collection a user may not read is never searched for them: nothing of it can reach an answer, a nearest passage,
a page image, an export or a status line, and it costs no time that could tell whether a document is there.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from dataclasses import dataclass, field

from rag.answer.quotes import answer
from rag.build.indexer import build
from rag.build.summary import BuildSummary
from rag.collections import Collection
from rag.config import Settings
from rag.errors import RagError, UploadRefused
from rag.search import Retriever, Scope
from rag.serve.audit import Audit
from rag.serve.login import AccountsFile
from rag.serve.page_images import cited_pages
from rag.serve.render import status_line
from rag.types import Answer, Citation

log = logging.getLogger(__name__)


@dataclass
class Shelf:
    """One collection as served: its settings, and its retriever or why it could not be loaded."""

    name: str | None
    settings: Settings
    retriever: Retriever | None = None
    problem: str = ""


@dataclass
class Library:
    """The collections of a server by name; a server of one corpus has one, named None."""

    shelves: dict[str | None, Shelf] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, collections: list[Collection], embedder_factory=None) -> Library:
        """Load every collection's index; a collection that cannot be loaded is served as unavailable, saying why."""
        shelves = {}
        for collection in collections or [None]:
            name = collection.name if collection else None
            shelf_settings = collection.settings(settings) if collection else settings
            shelf = Shelf(name, shelf_settings)
            try:
                shelf.retriever = Retriever(shelf_settings, embedder_factory, collection=name)
            except RagError as error:
                if collection is None:
                    raise
                shelf.problem = str(error)
                log.error("collection %s is not served: %s", name, error)
            shelves[name] = shelf
        return cls(shelves)

    @property
    def names(self) -> list[str | None]:
        return list(self.shelves)

    def retrievers(self, names) -> list[Retriever]:
        """The loaded retrievers of `names` (a collection that failed to load gives none)."""
        return [self.shelves[n].retriever for n in names if n in self.shelves and self.shelves[n].retriever]

    def reload(self, name: str | None) -> None:
        """Serve the version a build of collection `name` just published (or load it, if it had failed)."""
        shelf = self.shelves[name]
        if shelf.retriever is not None:
            shelf.retriever.refresh()
            return
        try:
            shelf.retriever, shelf.problem = Retriever(shelf.settings, collection=name), ""
        except RagError as error:
            shelf.problem = str(error)


@dataclass
class Access:
    """Who may read and edit which of a library's collections. Without an accounts file, everyone everything."""

    library: Library
    accounts: AccountsFile | None = None

    def readable(self, user: str | None) -> list[str | None]:
        """The collections `user` may read, in the library's order."""
        known = self._accounts()
        if known is None:
            return self.library.names
        if user not in known.users:
            return []
        if self.library.names == [None]:
            return [None]
        return known.collections_of(user, [n for n in self.library.names if n is not None])

    def may_edit(self, user: str | None, name: str | None) -> bool:
        """Editors and admins may upload, delete and rebuild in the collections they may read."""
        known = self._accounts()
        if known is None:
            return name in self.library.shelves
        account = known.users.get(user or "")
        return account is not None and account.role in ("editor", "admin") and name in self.readable(user)

    def for_editing(self, user: str | None, name: str | None, what: str) -> Settings:
        """The settings of collection `name` when `user` may change it, else UploadRefused naming the right needed
        (the same words whether the collection exists or not)."""
        if not self.may_edit(user, name):
            where = f"collection {name!r}" if name else "this corpus"
            raise UploadRefused(f"refused: {what} needs an editor of {where}")
        return self.library.shelves[name].settings

    def chosen(self, user: str | None, asked) -> list[str | None]:
        """The collections a question goes to: those asked for that `user` may read (all they may read when none
        is asked for); a name they may not read is passed over exactly as one that does not exist."""
        readable = self.readable(user)
        wanted = [n for n in (asked or []) if n]
        return [n for n in readable if n in wanted] if wanted else readable

    def _accounts(self):
        return self.accounts.get() if self.accounts is not None else None


@dataclass
class Answerer:
    """Every door's way to an answer (the chat, its API, the OpenAI-compatible endpoint, MCP): the collections of
    those asked that the user may read, the question and who asked it written to the audit log."""

    backend: object
    access: Access
    audit: Audit = field(default_factory=lambda: Audit(None))

    _busy: list = field(default_factory=lambda: [0, threading.Lock()])

    def ask(self, user: str | None, question: str, history=(), collections=None, scope: str = "") -> Answer:
        names = self.access.chosen(user, collections)
        with self._one_thread_when_crowded():
            result = self.backend.answer(question, history, names=names, scope=Scope.of(scope))
        self.audit.write("question", user, collections=[n for n in names if n], question=str(question)[:2000])
        return result

    @contextlib.contextmanager
    def _one_thread_when_crowded(self):
        """While other questions are being answered, answer this one on one torch thread: questions then share the
        cores side by side instead of each spreading over all of them and waiting on the others."""
        count, lock = self._busy
        with lock:
            self._busy[0] += 1
            crowded = self._busy[0] > 1
        torch = sys.modules.get("torch") if crowded else None
        before = torch.get_num_threads() if torch is not None else 0
        try:
            if torch is not None:
                torch.set_num_threads(1)  # this thread's own pools
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)
            with lock:
                self._busy[0] -= 1


class LocalBackend:
    """Where the chat's questions are answered and its rebuilds run: this process, from the live index of each
    collection in `library`.

    `rag serve --ray` swaps in rag.cluster.replicas.ReplicaBackend, whose answers come from Ray Serve replicas.
    """

    def __init__(self, settings: Settings, library: Library):
        self.settings, self.library = settings, library

    def answer(self, question: str, history=(), names=(None,), scope: Scope | None = None) -> Answer:
        """A verified, cited answer from the collections `names` alone (or the corpus-does-not-answer one)."""
        return answer(question, self.library.retrievers(names), self.settings, history=history, scope=scope)

    def pages(self, citation: Citation) -> list:
        """The rendered PDF pages of a citation, its quote highlighted ([] for other formats)."""
        shelf = self.library.shelves.get(citation.collection)
        if shelf is None or shelf.retriever is None:
            return []
        return cited_pages(shelf.settings.corpus, shelf.retriever.index, citation)

    def status(self, names=(None,)) -> str:
        """The status line of the collections `names` (a user's own)."""
        return status_line([self.library.shelves[n] for n in names if n in self.library.shelves])

    def settings_of(self, name: str | None) -> Settings:
        return self.library.shelves[name].settings

    def build(self, progress, name: str | None = None) -> BuildSummary:
        """An incremental build of one collection."""
        return build(self.settings_of(name), progress=progress)

    def refresh(self, name: str | None = None) -> None:
        """Start serving a version a build of `name` just published."""
        self.library.reload(name)

"""Plain frozen records passed between the stages: files → documents → passages → hits → answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Document:
    """One corpus file and its text. `source` is its path relative to the corpus folder, with `/`.

    For `.txt`/`.md` (`kind` "text") `text` is the decoded file; for converted formats ("pdf",
    "docx", "html") it is the text of record in `record`, empty until the build converts it.
    """

    source: str
    path: Path
    text: str
    sha256: str
    encoding: str = "utf-8"
    kind: str = "text"
    size: int = 0
    mtime_ns: int = 0
    record: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Skipped:
    """A file the reader left out, and why."""

    source: str
    reason: str


@dataclass(frozen=True)
class Passage:
    """A run of whole sentences. `text == document.text[start:end]`; lines are 1-based, inclusive."""

    id: str
    source: str
    start: int
    end: int
    line_start: int
    line_end: int
    text: str

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "line_start": self.line_start,
            "line_end": self.line_end,
            "text": self.text,
        }


@dataclass(frozen=True)
class Hit:
    """A passage found for a question, with the score that ranked it (higher is better)."""

    passage: Passage
    score: float
    dense: float = 0.0
    lexical: float = 0.0
    collection: str | None = None
    """The collection whose index the passage came from; None on a server of one corpus."""


@dataclass(frozen=True)
class Citation:
    """One verified quote: `quote` is exactly the source's decoded text from `start` to `end`.

    The quote is the answering sentence itself; `context_before`/`context_after` are the source's
    text right around it (neighbouring sentences of its paragraph), shown on request, never as the
    quote. `answer_start`/`answer_end` mark the answer inside the quote (source offsets, within
    `start`–`end`), or are None when it cannot be told.
    """

    n: int
    source: str
    start: int
    end: int
    line_start: int
    line_end: int
    quote: str
    passage_id: str
    relevance: float
    """How well the sentence answers the question, 0–1, from the fitted model (rag/models/answer_model.json)."""
    page: int | None = None
    """1-based physical page of the quote's first character (PDF); None where the format has no pages."""
    page_label: str | None = None
    """The page's printed label when the PDF defines labels ("iv"), else None."""
    pages: tuple[int, ...] = ()
    """Every page the quote runs over (two when it crosses a page break)."""
    section: str | None = None
    """Heading path above the quote in Word and HTML documents ("2 Methods › 2.1 Data")."""
    context_before: str = ""
    context_after: str = ""
    answer_start: int | None = None
    answer_end: int | None = None
    collection: str | None = None
    """The collection the quoted file belongs to (its `source` is relative to that collection's folder); None on a
    server of one corpus."""

    @property
    def key(self) -> str:
        """The quoted passage's key in `Answer.passages`: its id, qualified by the collection when there is one."""
        return passage_key(self.collection, self.passage_id)

    @property
    def answer(self) -> str:
        """The marked answer inside the quote, or "" when none is marked."""
        if self.answer_start is None or self.answer_end is None:
            return ""
        return self.quote[self.answer_start - self.start : self.answer_end - self.start]

    def to_dict(self) -> dict:
        found = asdict(self)
        found["pages"] = list(self.pages)
        return found

    def where(self) -> str:
        """ "p. 4", "pp. 4–5" or "" for a format without pages."""
        return page_phrase(self.pages, self.page_label)


def passage_key(collection: str | None, passage_id: str) -> str:
    """A passage's id, qualified by its collection when it has one (`hr:policies/leave.md#3`)."""
    return f"{collection}:{passage_id}" if collection else passage_id


def page_phrase(pages, label: str | None = None) -> str:
    """ "p. 4", "pp. 4–5", with the printed label when it differs ("p. 2 (printed 1)"); "" without pages."""
    if not pages:
        return ""
    printed = f" (printed {label})" if label and str(label) != str(pages[0]) else ""
    return (f"p. {pages[0]}" if len(pages) == 1 else f"pp. {pages[0]}–{pages[-1]}") + printed


@dataclass(frozen=True)
class Answer:
    """What the user is shown: quotes with `[n]` markers, or a plain statement that the corpus has none."""

    question: str
    text: str
    abstained: bool
    citations: tuple[Citation, ...] = ()
    nearest: tuple[Hit, ...] = ()
    searched_for: str = ""
    passages: dict[str, Passage] = field(default_factory=dict)
    relevance: float = 0.0
    """Relevance of the best sentence to the question (0–1); below the threshold the answer abstains."""

    def to_dict(self) -> dict:
        """The `rag ask --json` object."""
        return {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "searched_for": self.searched_for,
            "relevance": self.relevance,
            "citations": [c.to_dict() for c in self.citations],
            "nearest": [
                {
                    "passage_id": h.passage.id,
                    "source": h.passage.source,
                    "line_start": h.passage.line_start,
                    "line_end": h.passage.line_end,
                    "score": round(h.score, 4),
                    "text": h.passage.text,
                }
                for h in self.nearest
            ],
        }

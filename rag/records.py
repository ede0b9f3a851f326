"""Plain frozen records passed between the stages: files → documents → passages → hits → answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Document:
    """One decoded corpus file. `source` is its path relative to the corpus folder, with `/`."""

    source: str
    path: Path
    text: str
    sha256: str
    encoding: str = "utf-8"


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
        return {"id": self.id, "source": self.source, "start": self.start, "end": self.end,
                "line_start": self.line_start, "line_end": self.line_end, "text": self.text}


@dataclass(frozen=True)
class Hit:
    """A passage found for a question, with the score that ranked it (higher is better)."""

    passage: Passage
    score: float
    dense: float = 0.0
    lexical: float = 0.0


@dataclass(frozen=True)
class Citation:
    """One verified quote: `quote` is exactly the source's decoded text from `start` to `end`."""

    n: int
    source: str
    start: int
    end: int
    line_start: int
    line_end: int
    quote: str
    passage_id: str
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


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
    confidence: float = 0.0
    """Similarity of the best sentence to the question; below `min_score` the answer abstains."""

    def to_dict(self) -> dict:
        """The `rag ask --json` object."""
        return {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "searched_for": self.searched_for,
            "confidence": self.confidence,
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

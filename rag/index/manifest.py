"""What an index was built from: model, chunking, and a sha256 per file; and how a corpus differs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.config import Settings
from rag.embed.embedder import compatible, vector_recipe
from rag.errors import IndexDamaged
from rag.index import bm25 as lexical
from rag.types import Document

FORMAT_VERSION = 4
"""2: passages are read through passages.offsets.npy and BM25 is memory-mapped.
3: the manifest records the BM25 tokenizer with the rest of the index's recipe; converted documents
(PDF, Word, HTML): texts/<sha256>.json (+ .boxes.npy) hold their text of record; files record their
kind, size and mtime; `unreadable` remembers files that failed by sha256; the arithmetic of the
vectors is recorded.
4: the index is immutable segments (rag/index/segment.py); a version is this manifest alone, listing the
live segments and the files deleted from each; each file names its segment; BM25 keeps counts per
segment and scores over the whole live corpus."""
SPLITTER = "sentences-v2"


@dataclass(frozen=True)
class FileEntry:
    """One indexed file."""

    sha256: str
    encoding: str
    passages: int
    kind: str = "text"
    """"text" (offsets into the file itself) or a converted format ("pdf", "docx", "html")."""
    size: int = 0
    mtime_ns: int = 0
    """Size and modification time when indexed: the cheap check before the file is hashed again."""
    segment: str = ""
    """The segment that holds the file's passages (and its text of record)."""


@dataclass(frozen=True)
class SegmentEntry:
    """One live segment of a version and the files deleted from it since it was written."""

    name: str
    deleted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """The facts an index must agree with before it is trusted."""

    model: str
    dimension: int
    max_tokens: int
    overlap: int
    files: dict[str, FileEntry]
    passages: int
    built_at: str
    index_type: str = "flat"
    normalized: bool = True
    splitter: str = SPLITTER
    skipped: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    """sha256 → reason for converted files that could not be read: not tried again while unchanged."""
    precision: str = "float32"
    """The arithmetic the vectors were computed in (float32, bfloat16, int8); queries use the same."""
    arithmetic: str = ""
    """Why: `auto: int8, no native bfloat16 on this CPU`."""
    int8_recipe: str = ""
    """For int8 vectors, the recipe that made them (`rag.embed.embedder.Int8Recipe.name`); "" for other
    precisions, and in int8 indexes made before it was recorded, whose recipe was `FIRST_INT8_RECIPE`."""
    format_version: int = FORMAT_VERSION
    tokenizer: dict = field(default_factory=dict)
    """The BM25 tokenizer the terms were made with (`rag.index.bm25.TOKENIZER`); {} when unknown."""
    segments: tuple[SegmentEntry, ...] = ()
    """The live segments, oldest first; searching spans them all."""
    scanned_ns: int = 0
    """When the corpus was read for this version: a file whose size and mtime match its entry is
    trusted unread only if it was last modified well before that (a "racily clean" file is hashed)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        """Parse `manifest.json`, or say it is damaged and how to recover."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            raw["files"] = {name: FileEntry(**entry) for name, entry in raw["files"].items()}
            raw["segments"] = tuple(SegmentEntry(s["name"], tuple(s["deleted"])) for s in raw.get("segments", ()))
            return cls(**raw)
        except FileNotFoundError:
            raise IndexDamaged(f"index manifest {path} is missing; run `rag build --full`") from None
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as error:
            raise IndexDamaged(
                f"index manifest {path} is damaged ({error}); run `rag build --full`"
            ) from None

    def chunking(self) -> dict:
        """The parameters that decide passage boundaries."""
        return {"max_tokens": self.max_tokens, "overlap": self.overlap, "splitter": self.splitter}

    def recipe(self) -> dict:
        """Everything that decided this index's passages, vectors and terms."""
        return {"model": self.model, **self.chunking(), "tokenizer": self.tokenizer, "precision": self.precision,
                **({"int8_recipe": self.int8_recipe} if self.int8_recipe else {})}

    def mismatches(self, asked: dict, precision: str | None = None) -> list[str]:
        """Human-readable differences between this index and the recipe settings ask for (`recipe`),
        and the arithmetic a build would embed in when `precision` is given."""
        found = []
        if self.format_version != FORMAT_VERSION:
            found.append(f"format version: index has {self.format_version}, this rag reads {FORMAT_VERSION}")
        have = self.recipe()
        for key, wanted in asked.items():
            if have.get(key) != wanted:
                found.append(_difference(key, have.get(key), wanted))
        if precision is not None and not compatible(self.precision, precision):
            found.append(f"arithmetic: index has {self.precision}, RAG_PRECISION asks for {precision}")
        elif precision == self.precision == "int8":
            have_int8, use_int8 = self.int8_recipe or FIRST_INT8_RECIPE, vector_recipe("int8")
            if have_int8 != use_int8:
                found.append(f"int8 recipe: index has {have_int8}, this rag uses {use_int8} "
                             "(vectors of two recipes differ by more than a cosine of 0.999)")
        return found


FIRST_INT8_RECIPE = "ffn-out float32"
"""The int8 recipe of indexes whose manifest does not name one (2026-12-01 to 2026-12-02)."""


RECIPE_NAMES = {"model": "model", "max_tokens": "max_tokens", "overlap": "overlap",
                "splitter": "sentence splitter", "tokenizer": "BM25 tokenizer"}


def _difference(key: str, have, wanted) -> str:
    """One mismatch in words; for the tokenizer, which of its parts differ."""
    name = RECIPE_NAMES.get(key, key)
    if key == "tokenizer":
        parts = sorted(k for k in set(have or {}) | set(wanted) if (have or {}).get(k) != wanted.get(k))
        return f"{name}: index was built with {'an unrecorded one' if not have else 'other ' + ', '.join(parts)}"
    if key == "splitter":
        return f"{name}: index has {have}, this rag uses {wanted}"
    if isinstance(wanted, str):
        return f"{name}: index has {have!r}, settings ask for {wanted!r}"
    return f"{name}: index has {have}, settings ask for {wanted}"


def recipe(settings: Settings) -> dict:
    """The recipe `settings` ask for: model, chunking, splitter and BM25 tokenizer."""
    return {"model": settings.model, "max_tokens": settings.max_tokens, "overlap": settings.overlap,
            "splitter": SPLITTER, "tokenizer": dict(lexical.TOKENIZER)}


def recipe_hash(recipe: dict) -> str:
    """A short, stable name for a recipe: equal hashes mean indexes made the same way."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class CorpusChanges:
    """How the corpus on disk differs from an index's manifest. `renamed` maps new → old path."""

    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: list[str]
    renamed: dict[str, str]

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.renamed)


def diff(files: dict[str, FileEntry], documents: list[Document]) -> CorpusChanges:
    """Compare indexed files with documents read now; a moved file with the same bytes is a rename."""
    current = {d.source: d.sha256 for d in documents}
    added, changed, unchanged = [], [], []
    for source, sha in current.items():
        if source not in files:
            added.append(source)
        elif files[source].sha256 != sha:
            changed.append(source)
        else:
            unchanged.append(source)
    removed = [source for source in files if source not in current]
    by_sha = {}
    for source in removed:
        by_sha.setdefault(files[source].sha256, []).append(source)
    renamed = {}
    for source in list(added):
        candidates = by_sha.get(current[source])
        if candidates:
            renamed[source] = candidates.pop(0)
            added.remove(source)
            removed.remove(renamed[source])
    return CorpusChanges(sorted(added), sorted(changed), sorted(removed), sorted(unchanged), renamed)

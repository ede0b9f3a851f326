"""What an index was built from: model, chunking, and a sha256 per file; and how a corpus differs."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.config import Settings
from rag.errors import IndexDamaged
from rag.index import bm25
from rag.types import Document

FORMAT_VERSION = 5
"""The layout this rag reads: immutable segments (rag/index/segment.py) whose exact indexes scan half-precision
vectors (`flat-fp16`) and whose int8 vectors name their recipe; a version is this manifest alone. An index of
another format version is named and rebuilt in full, as for any other change of recipe."""
SPLITTER = "sentences-v3"
"""The passage cutter (rag.ingest.chunking); v3 bounds every unit and passage. A new splitter re-cuts every file
and re-embeds only the passages whose text changed."""


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
    not_read: dict[str, int] = field(default_factory=dict)
    """Files of the corpus left out because no reader is set to read their type, by name ending."""
    readers: dict[str, int] = field(default_factory=dict)
    """The reader version that wrote each converted kind's texts of record (a kind missing: 0, read again)."""
    """Files of the corpus left out because no reader is set to read their type, by name ending."""
    """sha256 → reason for converted files that could not be read: not tried again while unchanged."""
    precision: str = "float32"
    """The arithmetic the vectors were computed in (float32, bfloat16, int8); queries use the same."""
    arithmetic: str = ""
    """Why: `auto: int8, no native bfloat16 on this CPU`."""
    int8_recipe: str = ""
    """For int8 vectors, the recipe that made them (`rag.embed.int8.Int8Recipe.name`); "" for other precisions."""
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
    def read(cls, path: Path) -> Manifest:
        """Parse `manifest.json`, or say it is damaged and how to recover."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            raw["files"] = {name: FileEntry(**entry) for name, entry in raw["files"].items()}
            raw["segments"] = tuple(SegmentEntry(s["name"], tuple(s["deleted"])) for s in raw.get("segments", ()))
            return cls(**raw)
        except FileNotFoundError:
            raise IndexDamaged(f"index manifest {path} is missing; run `rag build --full`") from None
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as error:
            raise IndexDamaged(f"index manifest {path} is damaged ({error}); run `rag build --full`") from None

    def chunking(self) -> dict:
        """The parameters that decide passage boundaries."""
        return {"max_tokens": self.max_tokens, "overlap": self.overlap, "splitter": self.splitter}

    def recipe(self) -> dict:
        """Everything that decided this index's passages, vectors and terms."""
        return {
            "model": self.model,
            **self.chunking(),
            "tokenizer": self.tokenizer,
            "precision": self.precision,
            **({"int8_recipe": self.int8_recipe} if self.int8_recipe else {}),
        }

    def mismatches(self, asked: dict) -> list[str]:
        """Human-readable differences between this index and the recipe settings ask for (`recipe`).
        Whether its vectors' arithmetic can be kept is rag.embed.arithmetic's to say (`for_build`)."""
        found = []
        if self.format_version != FORMAT_VERSION:
            found.append(f"format version: index has {self.format_version}, this rag reads {FORMAT_VERSION}")
        have = self.recipe()
        for key, wanted in asked.items():
            if have.get(key) != wanted:
                found.append(_difference(key, have.get(key), wanted))
        return found


RECIPE_NAMES = {
    "model": "model",
    "max_tokens": "max_tokens",
    "overlap": "overlap",
    "splitter": "sentence splitter",
    "tokenizer": "BM25 tokenizer",
}


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
    return {
        "model": settings.model,
        "max_tokens": settings.max_tokens,
        "overlap": settings.overlap,
        "splitter": SPLITTER,
        "tokenizer": dict(bm25.TOKENIZER),
    }


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

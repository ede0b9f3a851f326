"""What an index was built from: model, chunking, and a sha256 per file; and how a corpus differs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.embedding import compatible
from rag.errors import IndexDamaged
from rag.records import Document

FORMAT_VERSION = 3
"""2: passages are read through passages.offsets.npy and BM25 is memory-mapped. 3: the arithmetic is recorded."""
SPLITTER = "sentences-v2"


@dataclass(frozen=True)
class FileEntry:
    """One indexed file."""

    sha256: str
    encoding: str
    passages: int


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
    precision: str = "float32"
    """The arithmetic the vectors were computed in (float32, bfloat16, int8); queries use the same."""
    arithmetic: str = ""
    """Why: `auto: int8, no native bfloat16 on this CPU`."""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        """Parse `manifest.json`, or say it is damaged and how to recover."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            raw["files"] = {name: FileEntry(**entry) for name, entry in raw["files"].items()}
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

    def mismatches(self, model: str, max_tokens: int, overlap: int, precision: str | None = None) -> list[str]:
        """Human-readable differences between this index and the settings (and arithmetic) asked for."""
        found = []
        if self.format_version != FORMAT_VERSION:
            found.append(f"format version: index has {self.format_version}, this rag reads {FORMAT_VERSION}")
        if self.model != model:
            found.append(f"model: index has {self.model!r}, settings ask for {model!r}")
        if self.max_tokens != max_tokens:
            found.append(f"max_tokens: index has {self.max_tokens}, settings ask for {max_tokens}")
        if self.overlap != overlap:
            found.append(f"overlap: index has {self.overlap}, settings ask for {overlap}")
        if self.splitter != SPLITTER:
            found.append(f"sentence splitter: index has {self.splitter}, this rag uses {SPLITTER}")
        if precision is not None and not compatible(self.precision, precision):
            found.append(f"arithmetic: index has {self.precision}, RAG_PRECISION asks for {precision}")
        return found


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

"""What one build did: the one-line summary `rag build` prints, and the object `rag build --json` prints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rag.ingest.corpus import not_read_phrase


@dataclass(frozen=True)
class BuildSummary:
    """What one build did, for the one-line summary and `rag build --json`."""

    files_added: int = 0
    files_changed: int = 0
    files_removed: int = 0
    files_renamed: int = 0
    files_unchanged: int = 0
    files_skipped: int = 0
    passages: int = 0
    passages_embedded: int = 0
    passages_reused: int = 0
    passages_removed: int = 0
    seconds: float = 0.0
    files_converted: int = 0
    """Converted files (PDF, Word, HTML) read this build; unchanged ones reuse their stored text."""
    conversion_seconds: float = 0.0
    full: bool = False
    reason: str = ""
    version: str = ""
    precision: str = ""
    arithmetic: str = ""
    """Which arithmetic embedded the passages and why (`auto: int8, no native bfloat16 on this CPU`)."""
    skipped: dict[str, str] = field(default_factory=dict)
    not_read: dict[str, int] = field(default_factory=dict)
    """Files left out because no reader is set to read their type, by name ending (".key": 2)."""
    segments: int = 0
    """Live segments after the build (and its merges)."""
    merges: int = 0

    def line(self) -> str:
        """One line a person reads at a glance."""
        files = (
            f"files: {self.files_added} added, {self.files_changed} changed, {self.files_removed} removed, "
            f"{self.files_renamed} renamed, {self.files_unchanged} unchanged, {self.files_skipped} skipped"
        )
        passages = (
            f"passages: {self.passages_embedded} embedded, {self.passages_reused} reused, "
            f"{self.passages_removed} removed, {self.passages} in index"
        )
        kind = "full build" if self.full else "incremental build"
        if not self.version:
            kind = "index up to date"
        elif self.reason:
            kind += f" ({self.reason})"
        arithmetic = f"; arithmetic {self.arithmetic}" if self.passages_embedded else ""
        segments = ""
        if self.version:
            merged = f", {self.merges} merged" if self.merges else ""
            segments = f"; {self.segments} segment{'s' if self.segments != 1 else ''}{merged}"
        ignored = f"; {not_read_phrase(self.not_read)}" if self.not_read else ""
        return f"{kind}; {files}; {passages}{arithmetic}{segments}{ignored}; {self.seconds:.1f}s"

    def to_dict(self) -> dict:
        return asdict(self)

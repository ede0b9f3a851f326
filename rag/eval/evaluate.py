"""`rag eval`: retrieval and quoting quality on a public data set (a BEIR folder or a SQuAD .json file).

The data set is written once as .txt files under `<index>/eval/<name>/corpus/` and indexed in
`<index>/eval/<name>/index/`; later runs find nothing changed and only ask the questions.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.config import Settings
from rag.embed.embedder import Embedder
from rag.errors import ConfigError
from rag.eval import metrics
from rag.eval.datasets import HALVES, Dataset, Question, in_half, load_dataset, materialise

DOCUMENTS_RANKED = 100
"""BEIR: distinct documents ranked per query, enough for recall@100."""
REFERENCE = {"scifact": {"BM25, title+text (Anserini flat)": 0.679, "all-MiniLM-L6-v2, dense (MTEB)": 0.645}}
"""Published test-split nDCG@10 to compare with, by data set name."""
REPORTED_SETTINGS = ("model", "hybrid", "candidates", "cross_encoder", "sentence_scoring", "min_score")
THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(51))
"""Abstention thresholds the SQuAD report sweeps (relevance 0–1)."""


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

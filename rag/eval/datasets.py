"""The public data sets `rag eval` reads: a BEIR folder or a SQuAD .json, as questions with their judgements and
a corpus written once as plain text files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.errors import RagError

FORMATS = "a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) or a SQuAD v1.1/v2.0 .json file"


HALVES = ("train", "held-out")
"""SQuAD halves by article: articles in file order alternate train, held-out, train, … The answer
model is fitted on the train half of SQuAD v2.0 only (training/fit_answer_model.py)."""


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


def halves(dataset: Dataset) -> dict[str, str]:
    """Article file → "train" or "held-out": articles in file order alternate, starting with train."""
    order = list(dict.fromkeys(q.source for q in dataset.questions))
    return {source: HALVES[i % 2] for i, source in enumerate(order)}


def in_half(dataset: Dataset, half: str) -> Dataset:
    """The same corpus (every article stays searchable) with only the questions of one half's articles."""
    which = halves(dataset)
    return replace(dataset, questions=[q for q in dataset.questions if which[q.source] == half])


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

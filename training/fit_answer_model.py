"""Fit the answer model (rag/models/answer_model.json): sentence relevance and the abstention threshold.

Training data only: SQuAD v2.0 dev questions of the *train* half of its articles (`rag.eval.datasets.halves`:
articles alternate train, held-out in file order), asked of the whole v2.0 corpus, and SciFact *train*
claims asked of the same corpus as off-corpus questions. A sentence is a positive when it holds a gold
answer of an answerable question inside that question's article; every sentence found for an
"impossible" question or a claim is a negative.

1. collect: each question runs the pipeline of `rag.answer.quotes.answer` up to its candidate sentences and their
   cosines, once, into a cache (training/out/answer_candidates.pkl; reused until -n, --claims or --seed change,
   or --recollect); their feature rows are computed from it again whenever the feature code changes
   (training/out/answer_features.npz), in under a minute.
2. fit: one logistic regression per scoring mode (with sentence scoring, and passage features only),
   L2-regularised, fitted by Newton's method on standardised features, in numpy.
3. calibrate: per mode, the highest threshold on the best sentence's relevance that declines at most
   `--max-declined` of the answerable training questions, so that as few unanswerable ones as possible are
   answered. Two-fold cross-validation by article inside the train half reports what to expect.

Writes the parameters, thresholds and training figures into rag/models/answer_model.json. Report figures on the
held-out half (`rag eval ../shared/eval/squad/dev-v2.0.json --half held-out`) and other data sets only;
`--report` asks SciFact *test* claims of the SQuAD v1.1 articles with the shipped file (off-corpus answered).

    flock /tmp/rag-heavy.lock .venv/bin/python training/fit_answer_model.py --index /tmp/rag-eval-answers
    flock /tmp/rag-heavy.lock .venv/bin/python training/fit_answer_model.py --report --index /tmp/rag-eval-answers
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import pickle
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.answer.candidates import candidate_sentences, sentence_cosines  # noqa: E402
from rag.answer.quotes import PASSAGES_TO_QUOTE, clean_question  # noqa: E402
from rag.answer.relevance import FEATURES, MODEL_FILE, NEEDS_SENTENCE_SCORING, feature_rows  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.eval import metrics  # noqa: E402
from rag.eval.evaluate import halves, load_dataset, prepare  # noqa: E402
from rag.search import Retriever  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "training" / "out" / "answer_features.npz"
RAW = ROOT / "training" / "out" / "answer_candidates.pkl"
L2 = 1.0
"""Ridge penalty on the standardised weights (in units of one training row's log-loss, summed)."""


def scifact_claims(eval_root: Path, split: str) -> list[tuple[str, str]]:
    """(id, text) of the SciFact claims judged in `split`."""
    qrels = eval_root / "scifact" / "qrels" / f"{split}.tsv"
    ids = {line.split("\t")[0] for line in qrels.read_text().splitlines()[1:] if line.strip()}
    rows = [
        json.loads(line) for line in (eval_root / "scifact" / "queries.jsonl").read_text().splitlines() if line.strip()
    ]
    return [(str(r["_id"]), r["text"]) for r in rows if str(r["_id"]) in ids]


class RememberingEmbedder:
    """The index's embedder, remembering every sentence's vector: questions share most candidate sentences."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.vectors: dict[str, np.ndarray] = {}

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if missing:
            self.vectors.update(zip(missing, self.embedder.encode(missing, batch_size=batch_size)))
        return np.vstack([self.vectors[t] for t in texts]) if texts else self.embedder.encode([])


def question_candidates(text: str, retriever: Retriever, embedder):
    """The candidate sentences of one question and their cosines (sentence, best clause) with it."""
    searched = clean_question(text)
    vector = embedder.encode([searched])[0]
    hits = retriever.search(searched, k=PASSAGES_TO_QUOTE, query_vector=vector)[:PASSAGES_TO_QUOTE]
    sentences = candidate_sentences(hits)
    if not sentences:
        return sentences, [], []
    cosines, clauses = sentence_cosines(sentences, vector, embedder)
    return sentences, cosines, clauses


def collect(args) -> dict:
    """Features and labels of every training question's candidate sentences.

    The slow part, retrieval and embedding every candidate sentence, is kept in RAW (the questions, their
    candidate sentences and the sentences' cosines) and reused until `--recollect`; the feature rows are
    computed from it again whenever FEATURES change, in seconds.
    """
    if CACHE.exists() and not args.recollect:
        cached = np.load(CACHE, allow_pickle=False)
        if tuple(cached["features"].tolist()) == FEATURES and str(cached["code"]) == _feature_code():
            print(f"features from the cache {CACHE.relative_to(ROOT)}")
            return {k: cached[k] for k in cached.files}
    started = time.perf_counter()
    raw = collect_raw(args)
    rows, labels, groups, kinds, articles = [], [], [], [], []
    for g, (text, answers, source, kind, sentences, cosines, clauses) in enumerate(raw):
        features = feature_rows(clean_question(text), sentences, cosines, clauses) if sentences else []
        for sentence, row in zip(sentences, features):
            rows.append(row)
            groups.append(g)
            positive = kind == "answerable" and sentence.hit.passage.source == source
            labels.append(float(positive and metrics.contains_answer(sentence.text, answers)))
        kinds.append(kind)
        articles.append(source)
    data = {
        "rows": np.asarray(rows),
        "labels": np.asarray(labels),
        "groups": np.asarray(groups),
        "kinds": np.asarray(kinds),
        "articles": np.asarray(articles),
        "features": np.asarray(FEATURES),
        "n": np.asarray(args.n),
        "code": np.asarray(_feature_code()),
        "seconds": np.asarray(time.perf_counter() - started),
    }
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(CACHE, **data)
    print(f"features of {len(raw)} questions computed in {time.perf_counter() - started:.0f} s")
    return data


def _feature_code() -> str:
    """A hash of the code that computes features, so that the cached rows follow every change to it."""
    files = [ROOT / "rag" / "relevance.py", ROOT / "rag" / "spans.py", ROOT / "rag" / "lexical.py"]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def collect_raw(args) -> list[tuple]:
    """(question, answers, article, kind, candidate sentences, sentence cosines, clause cosines) of every
    training question, from RAW unless `--recollect` or another `-n`/`--claims`/`--seed` was asked for."""
    key = {"n": args.n, "claims": args.claims, "seed": args.seed}
    if RAW.exists() and not args.recollect:
        with RAW.open("rb") as handle:
            stored = pickle.load(handle)
        if stored["key"] == key:
            print(f"candidate sentences from {RAW.relative_to(ROOT)}")
            return stored["questions"]
    dataset = load_dataset(args.eval / "squad" / "dev-v2.0.json")
    settings, _ = prepare(dataset, Settings(index=args.index))
    retriever = Retriever(settings)
    half = halves(dataset)
    train = [q for q in dataset.questions if half[q.source] == "train"]
    random.Random(args.seed).shuffle(train)
    asked = [(q.text, q.answers, q.source, "impossible" if q.impossible else "answerable") for q in train[: args.n]]
    claims = scifact_claims(args.eval, "train")
    random.Random(args.seed).shuffle(claims)
    asked += [(text, (), "", "off_corpus") for _, text in claims[: args.claims]]
    started = time.perf_counter()
    embedder = RememberingEmbedder(retriever.embedder)
    questions = []
    for g, (text, answers, source, kind) in enumerate(asked):
        sentences, cosines, clauses = question_candidates(text, retriever, embedder)
        questions.append((text, tuple(answers), source, kind, sentences, cosines, clauses))
        if (g + 1) % 200 == 0:
            print(f"  {g + 1}/{len(asked)} questions, {time.perf_counter() - started:.0f} s", flush=True)
    RAW.parent.mkdir(parents=True, exist_ok=True)
    with RAW.open("wb") as handle:
        pickle.dump({"key": key, "questions": questions}, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return questions


def fit(rows: np.ndarray, labels: np.ndarray, l2: float = L2) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Logistic regression by Newton's method: (mean, scale, weights, bias) on standardised features."""
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale < 1e-9] = 1.0
    x = np.hstack([(rows - mean) / scale, np.ones((len(rows), 1))])
    w = np.zeros(x.shape[1])
    penalty = np.full(x.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -40, 40)))
        gradient = x.T @ (p - labels) + penalty * w
        hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-7:
            break
    return mean, scale, w[:-1], float(w[-1])


def predict(rows, mean, scale, weights, bias) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip((rows - mean) / scale @ weights + bias, -40, 40)))


def per_question(relevance, data) -> list[dict]:
    """Each question's best relevance and whether its best sentence holds the answer."""
    groups, labels, kinds = data["groups"], data["labels"], data["kinds"]
    found = []
    for g, kind in enumerate(kinds.tolist()):
        mask = groups == g
        if not mask.any():
            found.append({"kind": kind, "best": 0.0, "first_right": False})
            continue
        at = int(np.argmax(np.where(mask, relevance, -1.0)))
        found.append({"kind": kind, "best": float(relevance[at]), "first_right": bool(labels[at])})
    return found


def rates(questions: list[dict], threshold: float) -> dict:
    """Declined answerable, answered impossible / off-corpus, first sentence right, at one threshold."""

    def share(kind, test):
        chosen = [q for q in questions if q["kind"] == kind]
        return sum(test(q) for q in chosen) / len(chosen) if chosen else None

    return {
        "declined_answerable": share("answerable", lambda q: q["best"] < threshold),
        "answered_impossible": share("impossible", lambda q: q["best"] >= threshold),
        "answered_off_corpus": share("off_corpus", lambda q: q["best"] >= threshold),
        "answer_in_first_sentence": share("answerable", lambda q: q["first_right"] and q["best"] >= threshold),
    }


def calibrate(questions: list[dict], max_declined: float) -> float:
    """The highest threshold declining at most `max_declined` of the answerable questions."""
    answerable = sorted(q["best"] for q in questions if q["kind"] == "answerable")
    if not answerable:
        return 0.0
    allowed = int(np.floor(max_declined * len(answerable)))
    return round(float(answerable[allowed]) - 1e-4, 4) if allowed < len(answerable) else 0.0


def fit_mode(data: dict, columns: list[int], max_declined: float, l2: float) -> dict:
    """Fit on the whole train half, calibrate, and report two-fold cross-validation by article."""
    rows, labels, groups = data["rows"][:, columns], data["labels"], data["groups"]
    question_articles = data["articles"]
    row_articles = question_articles[groups]
    names = sorted(set(question_articles.tolist()) - {""})
    fold = {name: i % 2 for i, name in enumerate(names)}
    # off-corpus claims are split into folds by their index
    row_fold = np.array([fold.get(a, g % 2) for a, g in zip(row_articles.tolist(), groups.tolist())])
    cv = []
    for k in (0, 1):
        train, test = row_fold != k, row_fold == k
        params = fit(rows[train], labels[train], l2)
        relevance = np.full(len(rows), -1.0)
        relevance[test] = predict(rows[test], *params)
        question_fold = np.array([fold.get(a, g % 2) for g, a in enumerate(question_articles.tolist())])
        train_questions = per_question(np.where(train, predict(rows, *params), -1.0), data)
        t = calibrate([q for q, f in zip(train_questions, question_fold) if f != k], max_declined)
        tested = [q for q, f in zip(per_question(relevance, data), question_fold) if f == k]
        cv.append(rates(tested, t))
    mean, scale, weights, bias = fit(rows, labels, l2)
    questions = per_question(predict(rows, mean, scale, weights, bias), data)
    threshold = calibrate(questions, max_declined)
    return {
        "mean": mean.round(6).tolist(),
        "scale": scale.round(6).tolist(),
        "weights": weights.round(6).tolist(),
        "bias": round(bias, 6),
        "threshold": threshold,
        "train": rates(questions, threshold),
        "cross_validated": {k: None if cv[0][k] is None else round((cv[0][k] + cv[1][k]) / 2, 4) for k in cv[0]},
        "curve": [{"threshold": t, **rates(questions, t)} for t in np.round(np.arange(0.0, 1.0001, 0.05), 2).tolist()],
    }


def report_off_corpus(args) -> dict:
    """Held-out check: SciFact *test* claims asked of the SQuAD v1.1 articles (they answer none), with the
    shipped model file, in both scoring modes: the share that is answered."""
    from rag.answer.quotes import answer

    claims = [text for _, text in scifact_claims(args.eval, "test")]
    found = {}
    for name in ("dev-v1.1.json",):
        settings, _ = prepare(load_dataset(args.eval / "squad" / name), Settings(index=args.index))
        retriever = Retriever(settings)
        for scoring in (True, False):
            asked = settings.replace(**{_SCORING_FIELD: scoring})
            answered = [not answer(c, retriever, asked).abstained for c in claims]
            key = f"{name} {'sentence_scoring' if scoring else 'passage_only'}"
            found[key] = round(sum(answered) / len(answered), 4)
            print(f"  SciFact test claims answered against {key}: {found[key]:.3f} of {len(claims)}", flush=True)
    return found


_SCORING_FIELD = "sentence_scoring" if hasattr(Settings(), "sentence_scoring") else "rerank"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", type=Path, default=Path("/work/shared/eval"), help="folder with squad/ and scifact/")
    parser.add_argument(
        "--index", type=Path, default=Path("/tmp/rag-eval-answers"), help="where eval indexes are cached"
    )
    parser.add_argument("-n", type=int, default=3000, help="SQuAD v2.0 train-half questions to collect")
    parser.add_argument("--claims", type=int, default=400, help="SciFact train claims to collect")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-declined", type=float, default=0.07, help="most answerable training questions declined")
    parser.add_argument("--l2", type=float, default=L2)
    parser.add_argument("--recollect", action="store_true", help="ignore the feature cache")
    parser.add_argument("--out", type=Path, default=MODEL_FILE)
    parser.add_argument(
        "--report",
        action="store_true",
        help="only report: SciFact test claims (off-corpus) answered with the shipped model file",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.report:
        found = report_off_corpus(args)
        print(
            "BENCH_JSON "
            + json.dumps({"off_corpus_answered": found, "seconds": round(time.perf_counter() - started, 1)})
        )
        return
    data = collect(args)
    modes = {}
    for name, features in (
        ("sentence_scoring", list(FEATURES)),
        ("passage_only", [f for f in FEATURES if f not in NEEDS_SENTENCE_SCORING]),
    ):
        found = fit_mode(data, [FEATURES.index(f) for f in features], args.max_declined, args.l2)
        modes[name] = {"features": features, **found}
        print(f"{name}: threshold {found['threshold']}")
        for part in ("train", "cross_validated"):
            print(f"  {part:<16} " + ", ".join(f"{k} {v:.3f}" for k, v in found[part].items() if v is not None))
    kinds = data["kinds"].tolist()
    model = {
        "about": "Sentence relevance for rag/answer/quotes.py: logistic regression over rag.answer.relevance.FEATURES; "
        "written by training/fit_answer_model.py, do not edit by hand.",
        "fitted": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "training/fit_answer_model.py " + " ".join(sys.argv[1:]),
        "training": {
            "squad_v2_train_half_questions": sum(k != "off_corpus" for k in kinds),
            "of_which_impossible": kinds.count("impossible"),
            "scifact_train_claims": kinds.count("off_corpus"),
            "sentences": int(len(data["labels"])),
            "positive_sentences": int(data["labels"].sum()),
            "max_declined": args.max_declined,
            "l2": args.l2,
            "seed": args.seed,
            "python": platform.python_version(),
        },
        "modes": modes,
    }
    args.out.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    print(
        "BENCH_JSON "
        + json.dumps(
            {
                m: {"threshold": v["threshold"], "train": v["train"], "cross_validated": v["cross_validated"]}
                for m, v in modes.items()
            }
        )
    )


if __name__ == "__main__":
    main()

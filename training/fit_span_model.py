"""Fit the span model (rag/models/span_model.json): which phrase of a quoted sentence is the marked answer.

Training data only: the answerable SQuAD v2.0 dev questions of the *train* half of its articles
(`rag.eval.datasets.halves`: articles alternate train, held-out in file order). For each, the sentence of its
paragraph that holds the gold answer's first character is read; every run of up to
`rag.answer.span_model.MAX_WORDS` words of it is a candidate, and a candidate is right when it holds one of
the gold answers with at most `--slack` words more than that answer. One conditional logit per question
kind (softmax over each sentence's candidates, L2-regularised, L-BFGS) gives the weights. Two-fold
cross-validation by article inside the train half reports the share of gold sentences whose chosen span
holds the answer, beside the rule-based `rag.answer.answer_types.answer_span`. No retrieval, no model: about a minute.

    .venv/bin/python training/fit_span_model.py          # writes rag/models/span_model.json
    .venv/bin/python training/fit_span_model.py --dry    # cross-validation only

Report figures on held-out data only (`rag eval ../shared/eval/squad/dev-v1.1.json`, the v2.0 held-out half).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.answer.answer_types import answer_span  # noqa: E402
from rag.answer.span_model import FEATURES, KINDS, MODEL_FILE, candidates, question_kind  # noqa: E402
from rag.eval import metrics  # noqa: E402
from rag.ingest.chunking import split_sentences  # noqa: E402

KIND_PENALTY = 5.0
"""How much harder a kind's own deviation from the shared weights is penalised than the shared weights."""


def gold_sentences(path: Path) -> list[dict]:
    """Question, gold sentence and answers of every answerable question of the train half's articles."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    found = []
    for number, article in enumerate(data):
        if number % 2:  # the held-out half (rag.eval.datasets.halves: alternate articles, train first)
            continue
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            spans = split_sentences(context)
            for qa in paragraph["qas"]:
                if qa.get("is_impossible") or not qa["answers"]:
                    continue
                start = qa["answers"][0]["answer_start"]
                sentence = next((context[a:b] for a, b in spans if a <= start < b), None)
                answers = [a["text"] for a in qa["answers"]]
                if sentence and metrics.contains_answer(sentence, answers):
                    found.append(
                        {
                            "question": qa["question"],
                            "sentence": sentence,
                            "answers": answers,
                            "article": number,
                            "kind": question_kind(qa["question"]),
                        }
                    )
    return found


def label(text: str, answers: list[str], slack: int) -> bool:
    """A candidate is right when it holds a gold answer with at most `slack` words more."""
    words = len(text.split())
    normal = metrics.normalise(text)
    return any(metrics.normalise(a) in normal and words <= len(a.split()) + slack for a in answers if a.strip())


def featurise(items: list[dict], slack: int) -> None:
    for item in items:
        spans, rows = candidates(item["question"], item["sentence"])
        item["spans"], item["rows"] = spans, rows
        item["labels"] = np.array([label(item["sentence"][a:b], item["answers"], slack) for a, b in spans], bool)


def fit(items: list[dict], l2: float) -> dict:
    """Standardisation over all candidates, then one conditional logit whose weights for each kind are
    shared weights plus that kind's own deviation (penalised `KIND_PENALTY` times as hard, so that a rare
    kind leans on the shared ones)."""
    every = np.vstack([item["rows"] for item in items if len(item["rows"])])
    mean, scale = every.mean(axis=0), every.std(axis=0)
    scale[scale < 1e-9] = 1.0
    width = len(FEATURES)
    groups, penalty = [], np.concatenate([np.full(width, l2), np.full(width * len(KINDS), l2 * KIND_PENALTY)])
    for item in items:
        if not item["labels"].any():
            continue
        x = (item["rows"] - mean) / scale
        wide = np.zeros((len(x), width * (1 + len(KINDS))))
        wide[:, :width] = x
        at = width * (1 + KINDS.index(item["kind"]))
        wide[:, at : at + width] = x
        groups.append((wide, item["labels"]))
    w = _conditional_logit(groups, penalty)
    weights = {kind: w[:width] + w[width * (1 + i) : width * (2 + i)] for i, kind in enumerate(KINDS)}
    return {"mean": mean, "scale": scale, "weights": weights}


def _conditional_logit(groups: list[tuple[np.ndarray, np.ndarray]], l2: np.ndarray) -> np.ndarray:
    x = np.vstack([rows for rows, _ in groups])
    positive = np.concatenate([labels for _, labels in groups])
    bounds = np.cumsum([0] + [len(rows) for rows, _ in groups])
    owner = np.repeat(np.arange(len(groups)), np.diff(bounds))

    def loss(w):
        z = x @ w
        top = np.maximum.reduceat(z, bounds[:-1])
        e = np.exp(z - top[owner])
        every = np.add.reduceat(e, bounds[:-1])
        right = np.add.reduceat(np.where(positive, e, 0.0), bounds[:-1])
        value = -np.sum(np.log(right) - np.log(every)) + 0.5 * np.sum(l2 * w * w)
        p_all = e / every[owner]
        p_right = np.where(positive, e / right[owner], 0.0)
        return value, x.T @ (p_all - p_right) + l2 * w

    found = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return found.x


def choose(params: dict, item: dict) -> tuple[int, int] | None:
    if not item["spans"]:
        return None
    z = (item["rows"] - params["mean"]) / params["scale"] @ params["weights"][item["kind"]]
    return item["spans"][int(np.argmax(z))]


def score(items: list[dict], pick) -> dict:
    """Share of gold sentences whose chosen span holds a gold answer, per kind, and the mean span length."""
    hits, lengths, per_kind = [], [], {}
    for item in items:
        span = pick(item)
        hit = span is not None and metrics.contains_answer(item["sentence"][span[0] : span[1]], item["answers"])
        hits.append(hit)
        per_kind.setdefault(item["kind"], []).append(hit)
        if span is not None:
            lengths.append(span[1] - span[0])
    return {
        "answer_in_span": round(float(np.mean(hits)), 4),
        "mean_span_chars": round(float(np.mean(lengths)), 1),
        "per_kind": {k: round(float(np.mean(v)), 3) for k, v in sorted(per_kind.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", type=Path, default=Path("/work/shared/eval/squad/dev-v2.0.json"))
    parser.add_argument("--slack", type=int, default=3, help="words a right candidate may hold beyond the gold answer")
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=MODEL_FILE)
    parser.add_argument("--dry", action="store_true", help="cross-validate only, write nothing")
    args = parser.parse_args()
    started = time.perf_counter()
    items = gold_sentences(args.squad)
    featurise(items, args.slack)
    print(
        f"{len(items)} gold sentences, {sum(len(i['spans']) for i in items)} candidate spans, "
        f"{time.perf_counter() - started:.0f} s"
    )
    folds = []
    for k in (0, 1):
        train = [i for i in items if (i["article"] // 2) % 2 != k]
        test = [i for i in items if (i["article"] // 2) % 2 == k]
        params = fit(train, args.l2)
        folds.append((score(test, lambda i, p=params: choose(p, i)), len(test)))
    total = sum(n for _, n in folds)
    cv = {
        "answer_in_span": round(sum(f["answer_in_span"] * n for f, n in folds) / total, 4),
        "mean_span_chars": round(sum(f["mean_span_chars"] * n for f, n in folds) / total, 1),
    }
    rule = score(items, lambda i: answer_span(i["question"], i["sentence"]))
    print(f"cross-validated: {cv}; folds {[f for f, _ in folds]}")
    print(f"rule-based answer_span on the same sentences: {rule}")
    if not args.dry:
        params = fit(items, args.l2)
        model = {
            "about": "Answer span scoring for rag/answer/span_model.py: one conditional logit per question kind over "
            "rag.answer.span_model.FEATURES; written by training/fit_span_model.py, do not edit by hand.",
            "fitted": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "training/fit_span_model.py " + " ".join(sys.argv[1:]),
            "training": {"squad_v2_train_half_gold_sentences": len(items), "slack": args.slack, "l2": args.l2},
            "features": list(FEATURES),
            "kinds": list(KINDS),
            "mean": params["mean"].round(6).tolist(),
            "scale": params["scale"].round(6).tolist(),
            "weights": {k: v.round(6).tolist() for k, v in params["weights"].items()},
            "train": score(items, lambda i: choose(params, i)),
            "cross_validated": cv,
            "rule_based": rule,
        }
        args.out.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    print(
        "BENCH_JSON "
        + json.dumps({"cross_validated": cv, "rule_based": rule, "seconds": round(time.perf_counter() - started, 1)})
    )


if __name__ == "__main__":
    main()

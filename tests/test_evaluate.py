"""`rag eval` end to end on tiny BEIR and SQuAD data sets written here, with the fake embedder."""

from __future__ import annotations

import functools
import json

import pytest
from fakes import FakeEmbedder

from rag import cli
from rag.config import Settings
from rag.eval import evaluate as evaluation
from rag.eval.datasets import DatasetError, load_squad
from rag.eval.evaluate import evaluate

DOCUMENTS = [
    {"_id": "d1", "title": "Harbour ferries", "text": "Ferries leave the harbour at dawn and return at dusk."},
    {"_id": "d2", "title": "Glacier retreat", "text": "The glacier loses ice every summer; meltwater feeds the lake."},
    {
        "_id": "doc/3",
        "title": "Orchard apples",
        "text": "Apples in the orchard ripen in October and pickers arrive by bus.",
    },
    {"_id": "d4", "title": "Volcano ash", "text": "Volcanic ash grounded flights for a week after the eruption."},
    {"_id": "d5", "title": "", "text": "Bakery bread is baked before sunrise with sourdough starter."},
]
QUERIES = [
    {"_id": "q1", "text": "when do harbour ferries leave"},
    {"_id": "q2", "text": "glacier ice meltwater lake"},
    {"_id": "q3", "text": "orchard apples pickers"},
    {"_id": "q4", "text": "volcanic ash flights eruption"},
    {"_id": "q9", "text": "a query with no judgements"},
]
QRELS = {"test": [("q1", "d1", 2), ("q2", "d2", 1), ("q3", "doc/3", 1)], "train": [("q4", "d4", 1)]}

ARTICLES = [
    (
        "Lighthouse (Harbour)",
        [
            "The harbour lighthouse is painted bright red. It was built in 1871 by the port authority.",
            "Its lamp burns paraffin. The keeper climbs ninety steps every evening.",
        ],
    ),
    (
        "Glacier",
        [
            "The glacier retreats every summer. Meltwater from the glacier feeds Lake Tarn.",
        ],
    ),
]
SQUAD_QUESTIONS = [  # (article, paragraph, question, answers, impossible)
    (0, 0, "What colour is the harbour lighthouse painted?", ["bright red"], False),
    (0, 0, "In what year was the lighthouse built by the port authority?", ["1871"], False),
    (0, 1, "How many steps does the keeper climb every evening?", ["ninety"], False),
    (1, 0, "Which lake does meltwater from the glacier feed?", ["Lake Tarn"], False),
    (1, 0, "Who invented zeppelin engines?", [], True),
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def beir(tmp_path):
    folder = tmp_path / "tinybeir"
    (folder / "qrels").mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", DOCUMENTS)
    write_jsonl(folder / "queries.jsonl", QUERIES)
    for split, rows in QRELS.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def squad_json(version="v2.0"):
    data = []
    for a, (title, contexts) in enumerate(ARTICLES):
        paragraphs = []
        for p, context in enumerate(contexts):
            qas = [
                {
                    "id": f"{a}-{p}-{n}",
                    "question": q,
                    "is_impossible": impossible,
                    "answers": [{"text": t, "answer_start": context.find(t)} for t in answers],
                }
                for n, (qa, qp, q, answers, impossible) in enumerate(SQUAD_QUESTIONS)
                if (qa, qp) == (a, p)
            ]
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": title, "paragraphs": paragraphs})
    return {"version": version, "data": data}


@pytest.fixture
def squad(tmp_path):
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(squad_json()), encoding="utf-8")
    return path


@pytest.fixture
def fake():
    return FakeEmbedder()


@pytest.fixture
def settings(tmp_path):
    return Settings(index=tmp_path / "index", model="fake-model", lock_timeout=2.0)


def run(path, settings, fake, **options):
    return evaluate(path, settings, embedder_factory=lambda name: fake, **options)


def test_beir_ranks_documents_scores_them_and_maps_file_names_back_to_ids(beir, settings, fake):
    report = run(beir, settings, fake)
    assert (report.dataset, report.kind, report.split, report.questions) == ("tinybeir", "beir", "test", 3)
    assert [r["id"] for r in report.records] == ["q1", "q2", "q3"]  # q4 is in train, q9 judged nowhere
    assert [r["top"][0] for r in report.records] == ["d1", "d2", "doc/3"]
    assert all(len(r["top"]) == len(DOCUMENTS) for r in report.records)  # fewer than 100 exist: all ranked
    assert report.scores == {"ndcg@10": 1.0, "mrr@10": 1.0, "recall@10": 1.0, "recall@100": 1.0}
    assert report.index["passages_embedded"] > 0


def test_beir_corpus_is_title_space_text_per_document_in_a_cache_under_the_index(beir, settings, fake):
    run(beir, settings, fake)
    corpus = settings.index / "eval" / "tinybeir" / "corpus"
    assert sorted(p.name for p in corpus.iterdir()) == ["d1.txt", "d2.txt", "d4.txt", "d5.txt", "doc_3.txt"]
    assert (corpus / "d1.txt").read_text() == "Harbour ferries Ferries leave the harbour at dawn and return at dusk."
    assert (corpus / "d5.txt").read_text() == DOCUMENTS[4]["text"]  # no title, no leading space
    assert (settings.index / "eval" / "tinybeir" / "index" / "CURRENT").is_file()


def test_second_run_reuses_the_index_and_embeds_only_queries(beir, settings, fake):
    run(beir, settings, fake)
    again = FakeEmbedder()
    report = run(beir, settings, again)
    assert (report.index["passages_embedded"], report.index["version"]) == (0, "")
    assert report.index["line"].startswith("index up to date")
    assert sorted(again.embedded) == sorted(q["text"] for q in QUERIES[:3])


def test_other_split_and_limit_with_a_fixed_seed(beir, settings, fake):
    assert [r["id"] for r in run(beir, settings, fake, split="train").records] == ["q4"]
    first = run(beir, settings, fake, limit=2, seed=7)
    assert first.questions == 2
    assert [r["id"] for r in run(beir, settings, fake, limit=2, seed=7).records] == [r["id"] for r in first.records]


def test_squad_quotes_the_answer_from_the_right_article_and_abstains_when_it_cannot(squad, settings, fake):
    report = run(squad, settings, fake)
    assert (report.dataset, report.kind, report.questions) == ("tiny-squad", "squad", 5)
    for key in (
        "answer_in_first_sentence",
        "answer_in_first_quote_with_context",
        "answer_in_any_quote",
        "citation_accuracy",
        "quote_in_gold_paragraph",
        "answer_in_retrieved_passages",
    ):
        assert report.scores[key] == 1.0, key
    assert (report.scores["answerable"], report.scores["unanswerable"]) == (4, 1)
    assert report.scores["declined_answerable"] == 0.0
    assert report.scores["answered_unanswerable"] == 0.0
    assert report.records[0]["first_source"] == "Lighthouse_(Harbour).txt"
    assert report.timings["per question, p95"] >= report.timings["per question, p50"] > 0


def test_squad_reports_the_marked_span_quote_length_and_the_threshold_curve(squad, settings, fake):
    report = run(squad, settings, fake)
    records = {r["question"]: r for r in report.records}
    built = records["In what year was the lighthouse built by the port authority?"]
    assert (built["first_quote"], built["first_answer"]) == ("It was built in 1871 by the port authority.", "1871")
    assert built["answer_in_marked_span"] is True
    steps = records["How many steps does the keeper climb every evening?"]
    assert "ninety steps" in steps["first_answer"] and steps["answer_in_marked_span"] is True
    assert len(steps["first_answer"].split()) <= len("ninety steps".split()) + 3  # the span model's slack
    shown = [r["quote_chars"] for r in report.records if not r["abstained"]]
    assert report.scores["mean_quote_chars"] == pytest.approx(sum(shown) / len(shown))
    marked = [len(r["first_answer"]) for r in report.records if not r["abstained"] and r["first_answer"]]
    assert report.scores["mean_marked_chars"] == pytest.approx(sum(marked) / len(marked))
    assert report.scores["mean_marked_chars"] < report.scores["mean_quote_chars"]
    assert 0.5 <= report.scores["answer_in_marked_span"] <= 1.0
    curve = report.scores["threshold_curve"]
    assert [row["threshold"] for row in curve] == list(evaluation.THRESHOLDS)
    assert curve[0]["declined_answerable"] == 0.0 and curve[0]["answered_unanswerable"] == 1.0  # 0: nothing declined
    declined = [row["declined_answerable"] for row in curve]
    assert declined == sorted(declined) and declined[-1] == 1.0  # a higher threshold declines more
    assert 0 < report.settings["threshold"] < 1  # the calibrated one: min_score is unset
    assert "threshold   declined answerable" in report.table()


def test_squad_half_asks_only_the_questions_of_alternate_articles(squad, settings, fake):
    train = run(squad, settings, fake, half="train")
    held_out = run(squad, settings, fake, half="held-out")
    assert {r["source"] for r in train.records} == {"Lighthouse_(Harbour).txt"}
    assert {r["source"] for r in held_out.records} == {"Glacier.txt"}
    assert (train.questions, held_out.questions, train.split) == (3, 2, "train half")
    corpus = settings.index / "eval" / "tiny-squad" / "corpus"
    assert len(list(corpus.iterdir())) == 2  # every article stays searchable


def test_half_needs_squad_data(beir, settings, fake):
    with pytest.raises(cli.RagError, match="--half train needs a SQuAD"):
        run(beir, settings, fake, half="train")


def test_squad_article_file_keeps_each_paragraph_at_its_offsets(squad, settings, fake):
    run(squad, settings, fake)
    dataset = load_squad(squad)
    corpus = settings.index / "eval" / "tiny-squad" / "corpus"
    assert sorted(dataset.files) == sorted(p.name for p in corpus.iterdir())
    for question in dataset.questions:
        start, end = question.span
        text = (corpus / question.source).read_text(encoding="utf-8")
        assert all(a in text[start:end] for a in question.answers)
    text = (corpus / dataset.questions[2].source).read_text(encoding="utf-8")
    assert text == "\n\n".join(ARTICLES[0][1])
    start, end = dataset.questions[2].span
    assert text[start:end] == ARTICLES[0][1][1]


def test_squad_v1_has_no_unanswerable_questions(tmp_path, settings, fake):
    data = squad_json("1.1")
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            paragraph["qas"] = [
                {k: v for k, v in qa.items() if k != "is_impossible"} for qa in paragraph["qas"] if qa["answers"]
            ]
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    report = run(path, settings, fake, limit=3)
    assert (report.questions, report.scores["unanswerable"], report.scores["answered_unanswerable"]) == (3, 0, None)


def test_a_removed_document_leaves_the_cached_corpus(beir, settings, fake):
    run(beir, settings, fake)
    write_jsonl(beir / "corpus.jsonl", DOCUMENTS[:-1])
    report = run(beir, settings, fake)
    assert report.index["files_removed"] == 1
    assert not (settings.index / "eval" / "tinybeir" / "corpus" / "d5.txt").exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "missing", "does not exist"),
        (lambda tmp: (tmp / "plain").mkdir() or tmp / "plain", "so not BEIR data"),
        (lambda tmp: (tmp / "notes.txt").write_text("hi") and tmp / "notes.txt", "not a folder or a .json file"),
        (lambda tmp: (tmp / "bad.json").write_text("{oops") and tmp / "bad.json", "cannot read .* as UTF-8 JSON"),
        (lambda tmp: (tmp / "other.json").write_text('{"rows": []}') and tmp / "other.json", "not in SQuAD format"),
    ],
    ids=["missing", "empty folder", "text file", "broken json", "other json"],
)
def test_unusable_data_sets_are_named_with_what_to_give_instead(tmp_path, settings, fake, make, message):
    path = make(tmp_path)
    with pytest.raises(DatasetError, match=message) as caught:
        run(path, settings, fake)
    assert path.name in str(caught.value)


def test_missing_split_lists_the_ones_there(beir, settings, fake):
    with pytest.raises(DatasetError, match=r"dev.tsv does not exist; choose --split .*: test, train"):
        run(beir, settings, fake, split="dev")


def test_malformed_beir_lines_are_named_by_file_and_line(beir, settings, fake):
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1 d1\n")
    with pytest.raises(DatasetError, match=r"test.tsv line 2"):
        run(beir, settings, fake)
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "text": "ok"}\n{"title": "no id"}\n')
    with pytest.raises(DatasetError, match=r"corpus.jsonl line 2 has no '_id'"):
        run(beir, settings, fake)


def test_limit_below_one_is_refused(beir, settings, fake):
    with pytest.raises(cli.RagError, match="--limit 0"):
        run(beir, settings, fake, limit=0)


def test_cli_eval_prints_a_table_or_one_json_object(beir, tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setattr(evaluation, "evaluate", functools.partial(evaluate, embedder_factory=lambda name: fake))
    assert cli.main(["eval", str(beir), "--index", str(tmp_path / "index"), "--model", "fake-model"]) == 0
    table = capsys.readouterr().out
    assert "tinybeir (BEIR, split test): 3 asked" in table
    assert "ndcg@10" in table and "index build" in table
    assert (
        cli.main(
            [
                "eval",
                str(beir),
                "--index",
                str(tmp_path / "index"),
                "--model",
                "fake-model",
                "--json",
                "--limit",
                "1",
                "--no-sentence-scoring",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["questions"] == 1 and report["settings"]["sentence_scoring"] is False


def test_cli_eval_error_is_one_clean_line(tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path / "nowhere"), "--index", str(tmp_path / "index")]) == cli.EXIT_ERROR
    assert "nowhere does not exist" in capsys.readouterr().err

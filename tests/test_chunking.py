"""rag.ingest.chunking: paragraphs, sentences and passages as exact character spans."""

from __future__ import annotations

import random
import unicodedata
from pathlib import Path

import pytest

from rag.ingest.chunking import (
    MAX_PASSAGE_CHARS,
    MAX_UNIT_CHARS,
    LineIndex,
    pack_passages,
    passage_units,
    split_paragraphs,
    split_sentences,
)
from rag.ingest.corpus import decode

CORPUS = Path(__file__).parent / "data" / "corpus"


def count_words(texts):
    """Fake token counter: one token per whitespace-separated word."""
    return [len(t.split()) for t in texts]


def texts(text, spans):
    return [text[a:b] for a, b in spans]


# --- split_paragraphs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, spans",
    [
        ("", []),
        ("   \n\t \n", []),
        ("One.", [(0, 4)]),
        ("  One.  ", [(2, 6)]),
        ("One.\nTwo.", [(0, 9)]),  # a single newline does not break a paragraph
        ("One.\n\nTwo.", [(0, 4), (6, 10)]),
        ("One.\n\n\n\nTwo.", [(0, 4), (8, 12)]),
        ("One.\n  \t\nTwo.", [(0, 4), (9, 13)]),  # a blank line may hold spaces
        ("One.\r\n\r\nTwo.", [(0, 4), (8, 12)]),  # raw CRLF blank line
        ("\n\nOne.\n\n", [(2, 6)]),
        ("A\n\n  B\n\nC", [(0, 1), (5, 6), (8, 9)]),
    ],
)
def test_split_paragraphs(text, spans):
    assert split_paragraphs(text) == spans


# --- split_sentences --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, sentences",
    [
        # nothing to split
        ("", []),
        ("   \n\t  \n\n ", []),
        ("No terminator at all", ["No terminator at all"]),
        ("One.", ["One."]),
        # plain terminators
        ("One two. Three four.", ["One two.", "Three four."]),
        ("Why? Because! Yes.", ["Why?", "Because!", "Yes."]),
        ("Really?! Yes.", ["Really?!", "Yes."]),
        ("Wait... Then go.", ["Wait...", "Then go."]),
        ("Wait\u2026 Then go.", ["Wait\u2026", "Then go."]),
        ("Wait... then go.", ["Wait... then go."]),  # lower case goes on
        ("He left.Then came back. Ok.", ["He left.Then came back.", "Ok."]),  # no space, no cut
        # abbreviations and initials
        ("Mr. Smith went home. He slept.", ["Mr. Smith went home.", "He slept."]),
        ("I met Dr. Jones. Then left.", ["I met Dr. Jones.", "Then left."]),
        ("Ask Mrs. Brown and Prof. White. Done.", ["Ask Mrs. Brown and Prof. White.", "Done."]),
        ("See e.g. Paris. Next one.", ["See e.g. Paris.", "Next one."]),
        ("See i.e. Rome. Next.", ["See i.e. Rome.", "Next."]),
        ("The U.S. Army came. Next.", ["The U.S. Army came.", "Next."]),
        ("J. Smith wrote it. Ok.", ["J. Smith wrote it.", "Ok."]),
        ("J. R. R. Tolkien wrote. Ok.", ["J. R. R. Tolkien wrote.", "Ok."]),
        ("(Dr. Who) came. Ok.", ["(Dr. Who) came.", "Ok."]),
        ("Fig. 3 shows it. No. 5 too.", ["Fig. 3 shows it.", "No. 5 too."]),
        ("At 5 p.m. Then.", ["At 5 p.m. Then."]),
        ("Version 3. Next.", ["Version 3.", "Next."]),  # a number is not an initial
        ("In 2015. The war.", ["In 2015.", "The war."]),
        # numbers
        ("It costs 3.5 dollars. Cheap.", ["It costs 3.5 dollars.", "Cheap."]),
        ("Pi is 3.14159 and e is 2.71828. Fine.", ["Pi is 3.14159 and e is 2.71828.", "Fine."]),
        # quotes and brackets closing a sentence
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ('He said "stop." and left.', ['He said "stop." and left.']),
        ('"Wow!" she said.', ['"Wow!" she said.']),
        ("It ended.\u201d Next.", ["It ended.\u201d", "Next."]),
        ("(See above.) Next.", ["(See above.)", "Next."]),
        ("Was it? (Yes.) Fine.", ["Was it?", "(Yes.)", "Fine."]),
        # punctuation that does not start a new sentence
        ("Wait. , then go.", ["Wait. , then go."]),
        ("See note 1.: Then.", ["See note 1.: Then."]),
    ],
)
def test_split_sentences(text, sentences):
    spans = split_sentences(text)
    assert texts(text, spans) == sentences
    for a, b in spans:
        assert not text[a].isspace() and not text[b - 1].isspace()


@pytest.mark.parametrize(
    "text, spans",
    [
        ("One two. Three four.", [(0, 8), (9, 20)]),
        ("  Hi. There.  ", [(2, 5), (6, 12)]),
        ("Hi.\n\n\n  \nThere.", [(0, 3), (9, 15)]),
        ("A one. B two.\n\nC three.", [(0, 6), (7, 13), (15, 23)]),
        ("Ab.\r\n\r\nCd.", [(0, 3), (7, 10)]),
    ],
)
def test_split_sentences_exact_spans(text, spans):
    assert split_sentences(text) == spans


@pytest.mark.parametrize(
    "text, sentences",
    [
        # markdown headings are sentences of their own
        ("# Title\nBody text. More.", ["# Title", "Body text.", "More."]),
        ("Intro.\n## Sec\nText.", ["Intro.", "## Sec", "Text."]),
        ("###### Deep heading\nBody.", ["###### Deep heading", "Body."]),
        ("#hashtag is not a heading\nok.", ["#hashtag is not a heading\nok."]),
        # list items and table rows never share a sentence
        ("- one\n- two. Three\n* four", ["- one", "- two.", "Three", "* four"]),
        ("+ plus\n\u2022 bullet", ["+ plus", "\u2022 bullet"]),
        ("1. first\n2) second\n> quote\n| a | b |", ["1. first", "2) second", "> quote", "| a | b |"]),
        ("Intro:\n- a\n- b", ["Intro:", "- a", "- b"]),
        ("- item one\n  continues here. Still item.\n- two", ["- item one\n  continues here.", "Still item.", "- two"]),
        # a single newline inside prose does not end a sentence by itself
        ("The cat\nsat down. Then.", ["The cat\nsat down.", "Then."]),
        ("The cat sat.\nThen it slept.", ["The cat sat.", "Then it slept."]),
        # paragraph breaks always end a sentence, even without punctuation
        ("No stop here\n\nNext one", ["No stop here", "Next one"]),
        ("Call Dr.\n\nSmith later.", ["Call Dr.", "Smith later."]),
    ],
)
def test_split_sentences_blocks(text, sentences):
    assert texts(text, split_sentences(text)) == sentences


@pytest.mark.parametrize(
    "text, sentences",
    [
        pytest.param(
            "I met Mr.\nSmith today. Ok.",
            ["I met Mr.\nSmith today.", "Ok."],
            id="abbreviation-at-line-wrap",
        ),
        pytest.param(
            "Written by J.\nSmith. Ok.",
            ["Written by J.\nSmith.", "Ok."],
            id="initial-at-line-wrap",
        ),
        pytest.param(
            "  # Title\nBody.",
            ["# Title", "Body."],
            id="indented-heading-first",
        ),
        pytest.param(
            "He said no. She left.",
            ["He said no.", "She left."],
            id="no-ends-sentence",
        ),
    ],
)
def test_split_sentences_line_wraps_headings_and_no(text, sentences):
    assert texts(text, split_sentences(text)) == sentences


@pytest.mark.parametrize(
    "text, start, end, spans",
    [
        ("Aaa. Bbb. Ccc.", 5, 14, [(5, 9), (10, 14)]),
        ("Aaa. Bbb. Ccc.", 0, 9, [(0, 4), (5, 9)]),
        ("xx Aaa. Bbb.\n\nCcc.", 3, None, [(3, 7), (8, 12), (14, 18)]),
        ("Aaa. Bbb.", 4, 5, []),  # only whitespace in range
    ],
)
def test_split_sentences_range_gives_absolute_offsets(text, start, end, spans):
    assert split_sentences(text, start, end) == spans


def test_split_sentences_crlf_file_matches_lf_text():
    decoded, encoding = decode((CORPUS / "crlf.txt").read_bytes())
    assert encoding == "utf-8" and "\r" not in decoded
    assert texts(decoded, split_sentences(decoded)) == [
        "First line of a Windows file.",
        "Second line, same paragraph.",
        "A new paragraph after a blank line.",
    ]
    assert split_sentences(decoded) == split_sentences(decoded.replace("\r\n", "\n"))


@pytest.mark.parametrize(
    "name, sentences",
    [
        (
            "report.txt",
            [
                "Quarterly report on the water treatment pilot",
                "The pilot plant in Riverton processed 1.2 million litres in its first quarter.",
                'Dr. Smith, who leads the project, called the results "encouraging."',
                "Costs stayed within the budget set by the U.S. Department of Agriculture.",
                "Several problems remain, e.g. the filters clog after heavy rain.",
                "J. Alvarez proposed a second settling tank.",
                "Would it pay for itself?",
                "The board thinks so!",
                "Next steps are simple...",
                "Order the tank, train two operators, and report again in October.",
            ],
        ),
        (
            "notes.md",
            [
                "# Field notes",
                "The survey team reached the northern ridge on the third day.",
                "Weather held until noon.",
                "Equipment checked before the climb:",
                "- two ropes of 50 m each",
                "- a first-aid kit",
                "- the satellite phone",
                "## Findings",
                "Soil samples were taken at 3.5 km intervals.",
                "Dr. Okafor will compare them with last year's results.",
            ],
        ),
    ],
)
def test_split_sentences_real_files(name, sentences):
    text = (CORPUS / name).read_text(encoding="utf-8")
    assert texts(text, split_sentences(text)) == sentences


# --- pack_passages ----------------------------------------------------------------------

FOUR = "One two. Three four. Five six. Seven eight."
TWO_PARAS = "Aa bb. Cc dd.\n\nEe ff. Gg hh."
LONG = "Short one. This sentence is far too long for the budget. Tail end."


@pytest.mark.parametrize(
    "text, max_tokens, overlap, spans",
    [
        ("", 10, 1, []),
        ("  \n\n  ", 10, 1, []),
        ("Just one.", 10, 1, [(0, 9)]),
        # one paragraph, four 2-token sentences
        (FOUR, 100, 1, [(0, 43)]),
        (FOUR, 8, 1, [(0, 43)]),
        (FOUR, 6, 1, [(0, 30), (21, 43)]),
        (FOUR, 6, 2, [(0, 30), (9, 43)]),
        (FOUR, 4, 0, [(0, 20), (21, 43)]),
        (FOUR, 4, 1, [(0, 20), (9, 30), (21, 43)]),
        (FOUR, 2, 1, [(0, 8), (9, 20), (21, 30), (31, 43)]),
        (FOUR, 1, 1, [(0, 3), (4, 8), (9, 14), (15, 20), (21, 25), (26, 30), (31, 36), (37, 43)]),
        (FOUR, 0, 0, [(0, 8), (9, 20), (21, 30), (31, 43)]),
        # two paragraphs
        (TWO_PARAS, 100, 1, [(0, 28)]),
        (TWO_PARAS, 8, 0, [(0, 28)]),
        (TWO_PARAS, 6, 0, [(0, 13), (15, 28)]),
        (TWO_PARAS, 6, 1, [(0, 13), (7, 28)]),
        (TWO_PARAS, 5, 1, [(0, 13), (7, 21), (15, 28)]),
        (TWO_PARAS, 3, 1, [(0, 6), (7, 13), (15, 21), (22, 28)]),
        # an over-long sentence is cut at its best boundaries (here white space) into pieces that fit
        (LONG, 3, 0, [(0, 10), (11, 24), (25, 35), (36, 48), (49, 66)]),
        (LONG, 3, 1, [(0, 10), (11, 24), (25, 35), (36, 48), (49, 66)]),
        (LONG, 4, 2, [(0, 10), (11, 27), (28, 44), (45, 66)]),
        (LONG, 11, 1, [(0, 56), (11, 66)]),
    ],
)
def test_pack_passages_spans(text, max_tokens, overlap, spans):
    assert pack_passages(text, count_words, max_tokens, overlap) == spans


@pytest.mark.parametrize(
    "text, max_tokens, overlap, passages",
    [
        # 5 of 10 tokens used: end at the paragraph break instead of taking one more sentence
        ("Aa bb cc dd ee.\n\nFf gg hh. Ii jj kk.", 10, 0, ["Aa bb cc dd ee.", "Ff gg hh. Ii jj kk."]),
        ("Aa bb cc dd ee.\n\nFf gg hh. Ii jj kk.", 10, 1, ["Aa bb cc dd ee.", "Ff gg hh. Ii jj kk."]),
        # the whole next paragraph fits: no break
        ("Aa bb cc dd ee.\n\nFf gg hh. Ii jj kk.", 11, 0, ["Aa bb cc dd ee.\n\nFf gg hh. Ii jj kk."]),
        ("Aa bb cc dd ee.\n\nFf gg hh ii jj.", 10, 0, ["Aa bb cc dd ee.\n\nFf gg hh ii jj."]),
        # 4 of 10 is under half full: fill up across the break
        ("Aa bb cc dd.\n\nFf gg hh. Ii jj kk ll.", 10, 0, ["Aa bb cc dd.\n\nFf gg hh.", "Ii jj kk ll."]),
        ("Aa bb cc dd.\n\nFf gg hh. Ii jj kk ll.", 10, 1, ["Aa bb cc dd.\n\nFf gg hh.", "Ff gg hh. Ii jj kk ll."]),
        # headings and list items are sentences; passages still end on them whole
        (
            "# Title\n\nOne two three. Four five six.\n\n- item one\n- item two",
            6,
            0,
            ["# Title\n\nOne two three.", "Four five six.", "- item one\n- item two"],
        ),
    ],
)
def test_pack_passages_prefers_paragraph_breaks(text, max_tokens, overlap, passages):
    assert texts(text, pack_passages(text, count_words, max_tokens, overlap)) == passages


def check_passages(text, spans, max_tokens, overlap):
    """The invariants every packing must keep; returns unit indices per passage."""
    units = [unit for para in passage_units(text, count_words, max_tokens) for unit in para]
    starts = {a: i for i, ((a, _), _) in enumerate(units)}
    ends = {b: i for i, ((_, b), _) in enumerate(units)}
    tokens = [count for _, count in units]
    members = []
    for a, b in spans:
        assert a in starts, f"passage {(a, b)} starts inside a unit"
        assert b in ends, f"passage {(a, b)} ends inside a unit"
        first, last = starts[a], ends[b]
        assert first <= last
        if max_tokens >= 1:
            assert sum(tokens[first : last + 1]) <= max_tokens, f"passage {(a, b)} is over budget"
        assert b - a <= MAX_PASSAGE_CHARS
        members.append(range(first, last + 1))
    for prev, cur in zip(members, members[1:]):
        assert cur.start > prev.start and cur.stop > prev.stop, "a passage repeats or is contained"
        assert len(set(prev) & set(cur)) <= max(overlap, 0)
    covered = set().union(*map(set, members)) if members else set()
    assert covered == set(range(len(units))), "a unit is in no passage"
    return members


def random_text(rng):
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma"]
    paragraphs = []
    for _ in range(rng.randint(1, 5)):
        sentences = []
        for _ in range(rng.randint(1, 6)):
            n = rng.choice([1, 1, 2, 3, 4, 6, 9, 15])
            body = " ".join(rng.choice(words) for _ in range(n))
            sentences.append(body[0].upper() + body[1:] + rng.choice([".", "!", "?", "..."]))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs)


@pytest.mark.parametrize("seed", range(40))
def test_pack_passages_invariants_random(seed):
    rng = random.Random(seed)
    text = random_text(rng)
    for max_tokens in (1, 4, 7, 12, 30):
        for overlap in (0, 1, 2, 3):
            spans = pack_passages(text, count_words, max_tokens, overlap)
            check_passages(text, spans, max_tokens, overlap)


@pytest.mark.parametrize(
    "sentence_words, count, max_tokens, overlap, per_passage",
    [
        (2, 10, 6, 1, 3),
        (2, 10, 6, 2, 3),
        (2, 10, 8, 3, 4),
        (3, 9, 9, 1, 3),
        (1, 12, 5, 4, 5),
        (2, 10, 4, 1, 2),
    ],
)
def test_pack_passages_overlap_is_exact_whole_sentences(sentence_words, count, max_tokens, overlap, per_passage):
    words = " ".join(["word"] * (sentence_words - 1))
    text = " ".join(f"Sent{i} {words}".strip() + "." for i in range(count))
    members = check_passages(text, pack_passages(text, count_words, max_tokens, overlap), max_tokens, overlap)
    assert all(len(m) == per_passage for m in members[:-1])
    for prev, cur in zip(members, members[1:]):
        assert list(cur)[:overlap] == list(prev)[-overlap:]
        assert cur.start == prev.stop - overlap
    assert members[-1].stop == count


@pytest.mark.parametrize("name", ["report.txt", "notes.md"])
@pytest.mark.parametrize("max_tokens, overlap", [(5, 0), (12, 1), (25, 2), (1000, 1)])
def test_pack_passages_real_files(name, max_tokens, overlap):
    text = (CORPUS / name).read_text(encoding="utf-8")
    spans = pack_passages(text, count_words, max_tokens, overlap)
    check_passages(text, spans, max_tokens, overlap)
    if max_tokens == 1000:
        first, last = split_sentences(text)[0], split_sentences(text)[-1]
        assert spans == [(first[0], last[1])]


# --- LineIndex --------------------------------------------------------------------------

LINES = "ab\ncd\n\nef"  # newlines at 2, 5, 6


@pytest.mark.parametrize(
    "text, offset, line",
    [
        ("", 0, 1),
        ("abc", 0, 1),
        ("abc", 3, 1),
        (LINES, 0, 1),
        (LINES, 1, 1),
        (LINES, 2, 1),  # the newline belongs to the line it ends
        (LINES, 3, 2),
        (LINES, 5, 2),
        (LINES, 6, 3),  # the empty line
        (LINES, 7, 4),
        (LINES, 8, 4),
        (LINES, 9, 4),
        ("\n\n\n", 0, 1),
        ("\n\n\n", 3, 4),
    ],
)
def test_line_index_line(text, offset, line):
    assert LineIndex(text).line(offset) == line


@pytest.mark.parametrize(
    "start, end, lines",
    [
        (0, 2, (1, 1)),
        (0, 3, (1, 1)),  # the span ends with the newline of line 1
        (0, 4, (1, 2)),
        (3, 5, (2, 2)),
        (3, 6, (2, 2)),
        (3, 8, (2, 4)),
        (7, 9, (4, 4)),
        (4, 4, (2, 2)),  # an empty span sits on its start line
        (0, 9, (1, 4)),
    ],
)
def test_line_index_lines(start, end, lines):
    assert LineIndex(LINES).lines(start, end) == lines


def test_line_index_agrees_with_splitlines_on_real_file():
    text = (CORPUS / "report.txt").read_text(encoding="utf-8")
    index = LineIndex(text)
    assert len(split_sentences(text)) > 5
    for a, b in split_sentences(text):
        first, last = index.lines(a, b)
        assert text.count("\n", 0, a) + 1 == first
        assert text.splitlines()[first - 1].find(text[a:b].splitlines()[0]) >= 0
        assert last == first + text[a:b].count("\n")


# --- bounded units and passages ---------------------------------------------------------


@pytest.mark.parametrize(
    "text, units",
    [
        # a paragraph of lines without sentence punctuation is read line by line
        ("so we met on tuesday\nthe bridge will cost forty million\nand open next spring", None),
        ("Region,Q3\nNorth,1204\nSouth,998\nEast,1500", None),
        ("[12:01] ann: are you there\n[12:02] bob: yes\n[12:03] ann: good", None),
        # wrapped prose keeps its sentences across line breaks
        (
            "The survey team reached the\nnorthern ridge on the third day. Weather\nheld until noon. The team\nwent on.",
            [
                "The survey team reached the\nnorthern ridge on the third day.",
                "Weather\nheld until noon.",
                "The team\nwent on.",
            ],
        ),
        # two lines are not enough to tell
        ("Title line\nAnother line", ["Title line\nAnother line"]),
    ],
)
def test_a_paragraph_of_lines_is_cut_into_its_lines(text, units):
    expected = [line for line in text.split("\n")] if units is None else units
    assert texts(text, split_sentences(text)) == expected


@pytest.mark.parametrize(
    "run, boundary",
    [
        ("word " * 400, " "),  # words without punctuation: cut at white space
        (("alpha beta, " * 100), ","),  # clause punctuation first
        ("line of text\n" * 100, "\n"),  # line breaks first
        ("x" * 5000, None),  # one huge word: cut anywhere
        ("e\u0301" * 2000, None),  # combining marks: never separated from their letter
    ],
)
def test_a_run_longer_than_a_unit_is_cut_at_its_best_boundary(run, boundary):
    text = "Before. " + run.strip() + " After."
    units = split_sentences(text)
    assert all(b - a <= MAX_UNIT_CHARS for a, b in units)
    assert "".join(text[a:b] for a, b in units).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace(
        "\n", ""
    )
    for a, b in units:
        assert not unicodedata.combining(text[a])
        if boundary is not None and b < len(text) - 6 and units.index((a, b)) > 0:
            assert text[b : b + 1].isspace() or text[b - 1] == boundary


def test_every_passage_fits_its_tokens_and_characters_whatever_the_shape():
    shapes = [
        "word " * 3000,
        "a.\n" * 3000,
        "x" * 20000,
        "\n".join(f"{i},{i * 2},north" for i in range(2000)),
        "東京" * 3000,
    ]
    for text in shapes:
        chars = lambda ts: [len("".join(t.split())) for t in ts]  # noqa: E731  every visible character a token
        for counter, budget in ((count_words, 50), (chars, 254)):
            spans = pack_passages(text, counter, budget, 1)
            check_passages_of(text, spans, counter, budget)


def check_passages_of(text, spans, counter, budget):
    assert spans, "nothing packed"
    for a, b in spans:
        assert b - a <= MAX_PASSAGE_CHARS
        assert counter([text[a:b]])[0] <= budget or b - a == 1
    covered = sorted(spans)
    assert covered[0][0] == len(text) - len(text.lstrip())

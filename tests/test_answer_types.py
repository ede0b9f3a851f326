"""What a question asks for and where its answer stands inside a sentence: dense tables, no model."""

from __future__ import annotations

import pytest

from rag.answer.answer_types import answer_span, expected_answer_type, holds_answer_type

SYRIA = (
    "Two main tasks were set before our military operation on September 30, 2015: the lawful regime's "
    "salvation from attacks of international terrorist organizations, which were trying to overthrow the "
    "legitimate government, and the liquidation of the project under the conditional name ISIS."
)
VESTNIK = (
    "The deputy head of the Council of the Russian Diplomats Association, Andrey Baklanov, told Vestnik "
    "Kavkaza about the importance of eliminating organized terrorist activity in the region."
)


@pytest.mark.parametrize(
    "question, kind",
    [
        ("When did the operation begin?", "date"),
        ("In what year was it built?", "date"),
        ("What century did the empire fall in?", "date"),
        ("Since when has the bridge been closed?", "date"),
        ("How many people live there?", "number"),
        ("How much did the stadium cost?", "number"),
        ("How often should I descale the kettle?", "number"),
        ("What percentage of voters turned out?", "number"),
        ("Who founded the company?", "name"),
        ("Whose portrait hangs in the hall?", "name"),
        ("Which outlet did Baklanov give the interview to?", "name"),
        ("What is the name of the river?", "name"),
        ("Where did the two leaders meet?", "place"),
        ("In which city was she born?", "place"),
        ("Why did the fuse blow?", None),
        ("What colour is the lighthouse?", None),
        ("What happened after the war?", None),
        ("How does a glacier carve a valley?", None),
    ],
)
def test_expected_answer_type(question, kind):
    assert expected_answer_type(question) == kind


@pytest.mark.parametrize(
    "question, sentence, marked",
    [
        ("When did the Russian military operation in Syria start?", SYRIA, "September 30, 2015"),
        ("Which outlet did Baklanov give the interview to?", VESTNIK, "Vestnik Kavkaza"),
        (
            "In how many countries will the terrorists now solve their problems?",
            "Now they will solve their problems in about 60 countries, strengthening hidden positions.",
            "about 60 countries",
        ),
        (
            "How often should I descale the kettle?",
            "Descale the kettle every four weeks with white vinegar.",
            "four weeks",
        ),
        ("When was the Hoover Dam finished?", "The Hoover Dam was finished in 1936.", "1936"),
        ("When were the tasks set?", "The tasks were set in 2013-2014 by the council.", "2013-2014"),
        ("When did the empire fall?", "The empire fell in the 5th century after long decline.", "5th century"),
        ("How much did it cost?", "The bridge cost $1.5 million to build.", "$1.5 million"),
        ("How many steps does the keeper climb?", "The keeper climbs ninety steps every evening.", "ninety steps"),
        ("Who founded the company?", "The company was founded by Steve Jobs in 1976.", "Steve Jobs"),
        ("Where did the two leaders meet?", "The two leaders met in Yalta in February 1945.", "Yalta"),
        (
            "Why does the fuse blow?",
            "Never run the kettle dry, because the heating element overheats and the fuse blows.",
            "because the heating element overheats and the fuse blows",
        ),
        (
            "What colour is the harbour lighthouse painted?",
            "The harbour lighthouse is painted bright red.",
            "bright red",
        ),
        ("What does meltwater from the glacier feed?", "Meltwater from the glacier feeds Lake Tarn.", "Lake Tarn"),
    ],
)
def test_answer_span_marks_the_answer_inside_the_sentence(question, sentence, marked):
    span = answer_span(question, sentence)
    assert span is not None
    assert sentence[span[0] : span[1]] == marked


@pytest.mark.parametrize(
    "question, sentence",
    [
        ("When did the operation begin?", "Puffins nest on cliffs and eat small fish."),  # no date, no shared word
        ("When did the operation begin?", "The operation began after long talks in the capital."),  # no date
        ("What is the tallest mountain in Africa?", "Puffins nest on cliffs."),
        ("Why?", "It rained."),
    ],
)
def test_answer_span_marks_nothing_it_cannot_tell(question, sentence):
    assert answer_span(question, sentence) is None


def test_the_year_asked_about_is_not_the_answer():
    sentence = "In 1990 the treaty was signed on 3 October 1990 in Berlin."
    span = answer_span("When in 1990 was the treaty signed?", sentence)
    assert sentence[span[0] : span[1]] == "3 October 1990"


@pytest.mark.parametrize(
    "kind, sentence, holds",
    [
        ("date", "It began on September 30, 2015.", True),
        ("date", "It began after the talks.", False),
        ("number", "About 60,000 people live there.", True),
        ("number", "Twelve thousand people live there.", True),
        ("number", "Many people live there.", False),
        ("name", "It was founded by Steve Jobs.", True),
        ("name", "it was founded by a student.", False),
        (None, "It failed in 1990.", False),
    ],
)
def test_holds_answer_type(kind, sentence, holds):
    assert holds_answer_type(kind, sentence) is holds


@pytest.mark.parametrize("question", ["When?", "", "Who founded it?"])
def test_answer_span_of_an_empty_sentence_is_none(question):
    assert answer_span(question, "") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in about 60 countries", "about 60 countries"),
        ("in 1955", "1955"),
        ("the Vestnik Kavkaza", "Vestnik Kavkaza"),
        ("salt and pepper", "salt and pepper"),  # inside: kept
        ("copper and", "copper"),
        ("of the", "of the"),  # nothing else: left as it is
        ("Paris", "Paris"),
        ("over 300 people in", "over 300 people"),
    ],
)
def test_a_marked_answer_sheds_leading_and_trailing_function_words(text, expected):
    from rag.answer.answer_types import trim_edges

    padded = f"x {text} y"
    start, end = trim_edges(padded, 2, 2 + len(text))
    assert padded[start:end] == expected

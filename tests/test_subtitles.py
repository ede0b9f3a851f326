"""Subtitles and meeting transcripts (.srt, .vtt): the text of record, speakers, "at HH:MM:SS" sections, refusals."""

from __future__ import annotations

import re

import pytest

from rag.ingest import readers
from rag.ingest.readers import Unreadable, subtitles

YOUTUBE = "\n".join(
    [
        "WEBVTT",
        "Kind: captions",
        "Language: en",
        "",
        "00:00:00.480 --> 00:00:02.869 align:start position:0%",
        " ",  # YouTube writes a line of one space here
        "so<00:00:00.640><c> today</c><00:00:00.960><c> we're</c><00:00:01.199><c> going</c>",
        "",
        "00:00:02.869 --> 00:00:02.879 align:start position:0%",
        "so today we're going",
        " ",
        "",
        "00:00:02.879 --> 00:00:05.190 align:start position:0%",
        "so today we're going",
        "to<00:00:03.120><c> talk</c><00:00:03.439><c> about</c><00:00:03.700><c> fish &amp; chips</c>",
        "",
        "00:00:05.190 --> 00:00:05.200 align:start position:0%",
        "to talk about fish &amp; chips",
        " ",
        "",
        "00:01:12.000 --> 00:01:14.000 align:start position:0%",
        "to talk about fish &amp; chips",
        "and&nbsp;why <c.colorE5E5E5>&lt;salt&gt;</c> matters",
        "",
    ]
)
"""YouTube's automatic captions: header metadata, cue settings, rolling lines, word timestamps, entities."""

TEAMS = """WEBVTT

0a1b2c3d-4e5f-6789-abcd-ef0123456789/12-0
00:12:31.540 --> 00:12:34.220
<v Ann Lee>Good morning everyone, we will need to</v>

0a1b2c3d-4e5f-6789-abcd-ef0123456789/13-0
00:12:34.220 --> 00:12:36.100
<v Ann Lee>raise the budget.</v>

0a1b2c3d-4e5f-6789-abcd-ef0123456789/14-0
00:12:36.100 --> 00:12:37.100
<v Ann Lee>Next item.</v>

0a1b2c3d-4e5f-6789-abcd-ef0123456789/15-0
00:12:37.500 --> 00:12:39.900
<v Bob Stone>I <b>disagree</b> with that &amp; here is why.</v>
"""
"""Microsoft Teams: a UUID identifier per cue, one voice per cue."""

ZOOM = """\ufeffWEBVTT - meeting transcript

NOTE exported by the meeting app
with two lines of comment

STYLE
::cue(v[voice="Ann"]) { color: yellow }

1
01:02.500 --> 01:05.000 line:90% align:middle
<v.loud Ann>we start with the roads</v>

2
01:05.000 --> 01:07.000
<v Ann>then the parks</v>

3
01:07.000 --> 01:09.000
<v Cy>and <i>what</i> about the schools</v>

4
01:09.000 --> 01:11.000
<v Ann>schools come last <v Cy>fine
"""
"""A Zoom-style export: header text after WEBVTT, NOTE and STYLE blocks, numbered cues, no hours."""

FFMPEG_SRT = (
    "\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Where were you</i>\r\n{\\an8}last night?\r\n\r\n"
    "2\r\n00:00:02,600 --> 00:00:04,000\r\n<i>Out.</i>\r\n\r\n"
    '3\r\n00:00:11,250 --> 00:00:13,000\r\n<font color="#ffff00">Much later, a new scene.</font>\r\n\r\n'
    "4\r\n01:02:03,000 --> 01:02:04,000\r\nThe end & after\r\n\r\n"
)
"""ffmpeg's SubRip: BOM, CRLF, italics, an ASS position override, a font tag."""


def at(record, line: str) -> str:
    """The section label of the line `line` of the record's text."""
    return record.section_of(record.text.index(line))


def test_youtube_captions_are_read_once_with_their_times():
    record = subtitles.read(YOUTUBE.encode())
    assert record.kind == "subtitles"
    assert record.text == "so today we're going\nto talk about fish & chips\n\nand why <salt> matters"
    assert record.sections == ((0, "at 00:00:00"), (21, "at 00:00:02"), (49, "at 00:01:12"))
    assert at(record, "and why") == "at 00:01:12"


def test_teams_voices_name_each_line_and_a_sentence_over_two_cues_is_one_line():
    record = subtitles.read(TEAMS.encode())
    assert record.text == (
        "Ann Lee: Good morning everyone, we will need to raise the budget.\n"
        "Ann Lee: Next item.\n\n"
        "Bob Stone: I disagree with that & here is why."
    )
    assert at(record, "Ann Lee: Good") == "at 00:12:31"
    assert at(record, "raise the budget") == "at 00:12:34"  # a joined cue keeps its own start
    assert at(record, "Ann Lee: Next") == "at 00:12:36" and at(record, "Bob Stone") == "at 00:12:37"
    assert record.text.index("raise") in dict(record.sections)


def test_zoom_style_header_notes_styles_numbers_and_times_without_hours():
    record = subtitles.read(ZOOM.encode())
    assert record.text == (
        "Ann: we start with the roads\nAnn: then the parks\n\n"
        "Cy: and what about the schools\n\nAnn: schools come last Cy: fine"
    )
    assert [label for _, label in record.sections] == ["at 00:01:02", "at 00:01:05", "at 00:01:07", "at 00:01:09"]
    assert "NOTE" not in record.text and "cue" not in record.text and "\n1\n" not in record.text


def test_ffmpeg_srt_with_crlf_tags_and_a_pause():
    record = subtitles.read(FFMPEG_SRT.encode())
    assert record.text == "Where were you last night?\nOut.\n\nMuch later, a new scene.\n\nThe end & after"
    assert [label for _, label in record.sections] == ["at 00:00:01", "at 00:00:02", "at 00:00:11", "at 01:02:03"]
    assert at(record, "Out.") == "at 00:00:02" and at(record, "The end") == "at 01:02:03"


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            "1\n00:00:01,000 --> 00:00:02,000\nHello\n\nagain\n\n2\n00:00:03,000 --> 00:00:04,000\nBye",
            "Hello again\nBye",
        ),
        ("1\n00:00:01,000 --> 00:00:02,000\nHello\n2\n00:00:03,000 --> 00:00:04,000\nBye", "Hello\nBye"),
        ("00:00:01,000 --> 00:00:02,000\nno index\n\n00:00:03.000 --> 00:00:04.000\ndots", "no index\ndots"),
        (
            "1\n00:00:01,000 --> 00:00:02,000\n\n2\n00:00:03,000 --> 00:00:04,000\nafter an empty cue",
            "after an empty cue",
        ),
        ("1\n00:00:01,000 --> 00:00:02,000\nx < 5 and y > 2\n", "x < 5 and y > 2"),
        ("1\n00:00:01,000 --> 00:00:02,000\nno, no\n\n2\n00:00:02,000 --> 00:00:03,000\nno, no", "no, no\nno, no"),
    ],
    ids=["blank-line-inside-a-cue", "missing-blank-line", "no-index", "empty-cue", "bare-angle-brackets", "repeat"],
)
def test_srt_as_sloppy_writers_leave_it(raw, expected):
    assert subtitles.read(raw.encode()).text == expected


def test_a_cue_whose_timing_cannot_be_read_is_left_out_and_the_rest_is_kept():
    raw = (
        "1\n00:00:01,000 --> 00:00:02,000\nfirst\n\n"
        "2\n00:00:03,000 -> 00:00:04,000\nbroken arrow\n\n"
        "3\n00:00:05,000 --> 00:00:0X,000\nbroken time\n\n"
        "4\n00:00:07,000 --> 00:00:08,000\nlast\n"
    )
    record = subtitles.read(raw.encode())
    assert record.text == "first\nlast"
    assert record.sections == ((0, "at 00:00:01"), (6, "at 00:00:07"))


REFUSALS = [
    (
        "1\n00:00:01 - 00:00:02\nhello\n\n2\n00:00:03,000 --> 00:00:0x\nworld\n",
        "no cue has a timing line that can be read",
    ),
    ("WEBVTT\nKind: captions\n\nNOTE nothing said yet\n", "no subtitle cues in it"),
    ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<c> </c>\n", "its 1 cues hold no text"),
    ("just some notes\nabout a talk\n", "no subtitle cues in it"),
]


@pytest.mark.parametrize("raw, reason", REFUSALS, ids=["timings", "empty-vtt", "no-text", "prose"])
def test_refusals_name_their_reason(raw, reason):
    with pytest.raises(Unreadable, match=re.escape(reason)):
        subtitles.read(raw.encode())


def test_a_broken_timing_is_quoted_in_the_refusal():
    with pytest.raises(Unreadable, match=re.escape("(line 2: '00:00:01 - 00:00:02')")):
        subtitles.read(REFUSALS[0][0].encode())


def test_too_many_cues_are_refused_by_name(monkeypatch):
    monkeypatch.setattr(subtitles, "MAX_CUES", 10)
    raw = "".join(f"{n}\n00:00:{n:02d},000 --> 00:00:{n:02d},500\nline {n}\n\n" for n in range(1, 12))
    with pytest.raises(Unreadable, match="over 10 cues; split the file into parts"):
        subtitles.read(raw.encode())


def test_undecodable_bytes_are_refused():
    with pytest.raises(Unreadable, match="binary file"):
        subtitles.read(b"1\n00:00:01,000 --> 00:00:02,000\n\x00\x01\x02")


def test_encodings_writers_use_are_read():
    assert subtitles.read(TEAMS.encode("utf-16")).text.startswith("Ann Lee: Good morning")
    srt = "1\n00:00:01,000 --> 00:00:02,000\nCafé crème, s'il vous plaît\n".encode("cp1252")
    assert subtitles.read(srt).text == "Café crème, s'il vous plaît"


@pytest.mark.parametrize(
    "data, sniffed, plausible",
    [
        (b"WEBVTT\n\n00:01.000 --> 00:02.000\nhi\n", True, True),
        (b"\xef\xbb\xbfWEBVTT - title\r\n", True, False),
        ("WEBVTT\n".encode("utf-16"), True, False),
        (b"WEBVTTX\n", False, False),
        (FFMPEG_SRT.encode(), False, True),
        (b"\n\n1\n00:00:01,000 --> 00:00:02,000\nhi\n", False, True),
        (b"00:00:01,000 --> 00:00:02,000\nhi\n", False, True),
        (b"Meeting notes\n\nWe met at 10:00 and left at 11:00.\n", False, False),
        (b"1\n00:00:01 - 00:00:02\nbroken first timing: read() decides\n", False, True),
        (b"1\nTwo\n00:00:01,000 --> 00:00:02,000\n", False, False),
        (b"\x89PNG\r\n\x1a\n\x00\x00", False, False),
    ],
)
def test_sniff_and_plausible(data, sniffed, plausible):
    assert subtitles.sniff(data) is sniffed
    assert subtitles.plausible(data) is plausible


def test_the_type_is_decided_by_content():
    assert readers.kind_of("talk.SRT") == readers.kind_of("talk.vtt") == "subtitles"
    assert readers.content_problem("subtitles", FFMPEG_SRT.encode()) == ""
    assert readers.content_problem("subtitles", TEAMS.encode()) == ""  # a .srt holding WebVTT is still read
    prose = b"Meeting notes\n\nWe met at ten.\n"
    assert "its content is not a subtitle file (.srt or .vtt)" in readers.content_problem("subtitles", prose)
    assert "its content is a PDF file" in readers.content_problem("subtitles", b"%PDF-1.7\n1 0 obj")
    assert readers.content_problem("text", TEAMS.encode()) == ""  # a transcript saved as .txt stays text


def test_a_build_indexes_transcripts_and_names_each_skip(make_settings):
    from fakes import FakeEmbedder

    from rag.build.indexer import build
    from rag.index import store
    from rag.ingest.corpus import read_file

    settings = make_settings(extensions=(".txt", ".srt", ".vtt"), min_score=0.0)
    files = {
        "talk.vtt": TEAMS.encode(),
        "film.srt": FFMPEG_SRT.encode(),
        "notes.srt": b"Meeting notes\n\nWe met at ten.\n",
        "empty.vtt": b"WEBVTT\n\n",
        "broken.srt": REFUSALS[0][0].encode(),
        "other.txt": b"The harbour opens at six in the morning.\n",
    }
    for name, data in files.items():
        (settings.corpus / name).write_bytes(data)
    embedder = FakeEmbedder()
    summary = build(settings, embedder_factory=lambda name: embedder)
    assert "its content is not a subtitle file" in summary.skipped["notes.srt"]
    assert "no subtitle cues in it" in summary.skipped["empty.vtt"]
    assert "no cue has a timing line that can be read" in summary.skipped["broken.srt"]
    loaded = store.load(settings.index)
    assert {name: entry.kind for name, entry in loaded.manifest.files.items()} == {
        "talk.vtt": "subtitles",
        "film.srt": "subtitles",
        "other.txt": "text",
    }
    for passage in (p for p in loaded.passages if p.source != "other.txt"):
        entry = loaded.manifest.files[passage.source]
        record = readers.load_record(loaded.texts_folder(passage.source), entry.sha256)
        assert record.text[passage.start : passage.end] == passage.text
    skipped = read_file(settings.corpus / "talk.vtt", "talk.vtt", settings.corpus, max_bytes=100)
    assert "bytes is over the 100-byte limit" in skipped.reason


MEETING_LINES = [
    "okay lets get started then",
    "can everyone hear me alright",
    "yes we can hear you fine",
    "first item on the list is the parking plan",
    "the car park on station road is full most mornings",
    "we counted the spaces again last week",
    "there are about three hundred of them",
    "the council wants to add a second level",
    "i think we should wait for the traffic survey",
    "the survey team starts on monday",
    "next item is the library opening hours",
    "the library will stay open until eight on thursdays",
    "volunteers have offered to cover the evenings",
    "we still need someone for the saturday shift",
    "moving on to the school playground",
    "the new swings arrive at the end of the month",
    "the old slide has been taken away already",
    "parents asked about shade over the sand pit",
    "we can look at a canvas cover for the summer",
    "any questions before the next item",
    "what about the bus timetable change",
    "the number twelve will run every twenty minutes",
    "the early service at six stays the same",
    "people on hill street asked for a new stop",
    "we will pass that on to the bus company",
    "the river path needs new lighting",
    "two lamps near the footbridge are broken",
    "the repair crew is booked for next tuesday",
    "the allotment waiting list is growing",
    "we have forty names on it right now",
]
FACT = "the new bridge will cost about forty million"


def meeting_vtt() -> str:
    """A Teams-style meeting: ~200 short unpunctuated lowercase cues in turns of three to five, the fact near the end."""
    speakers = ["Ann Lee", "Bob Stone", "Cy Patel"]
    said = [MEETING_LINES[n % len(MEETING_LINES)] for n in range(196)]
    said[180:184] = ["now the river crossing", "the engineers sent their estimate", FACT, "and it opens in spring"]
    cues, start = ["WEBVTT", ""], 0
    for n, text in enumerate(said):
        speaker = speakers[(n // 4) % 3] if n < 180 else "Bob Stone"
        start += 7_000 if n % 23 == 22 else 2_600
        begin, end = subtitles.clock(start), subtitles.clock(start + 2_400)
        cues += [f"c0ffee00-{n:04d}/{n}-0", f"{begin}.{start % 1000:03d} --> {end}.{(start + 2400) % 1000:03d}"]
        cues += [f"<v {speaker}>{text}</v>", ""]
    return "\n".join(cues)


def test_a_meeting_transcript_answers_with_the_cue_and_its_time(make_settings, real_embedder, tmp_path):
    from rag.answer.quotes import answer
    from rag.build.indexer import build
    from rag.index import store
    from rag.search import Retriever

    settings = make_settings(extensions=(".txt", ".vtt"), model=real_embedder.name)
    transcript = meeting_vtt()
    (settings.corpus / "council-meeting.vtt").write_text(transcript, encoding="utf-8")
    (settings.corpus / "history.txt").write_text(
        "The old stone bridge over the river was built in 1820 by the town's masons.\n\n"
        "It was repaired after the flood of 1953 and again in 1990.\n",
        encoding="utf-8",
    )
    build(settings, embedder_factory=lambda name: real_embedder)
    result = answer("How much will the new bridge cost?", Retriever(settings), settings)
    assert not result.abstained, result.text
    first = result.citations[0]
    assert first.source == "council-meeting.vtt" and FACT in first.quote, result.text
    record = subtitles.read(transcript.encode())
    fact_line = record.text.index("Bob Stone: " + FACT)
    assert first.section == record.section_of(fact_line) == "at " + subtitles.clock(_start_of(transcript, FACT))
    loaded = store.load(settings.index)
    stored = readers.load_record(loaded.texts_folder(first.source), loaded.manifest.files[first.source].sha256)
    assert stored.text[first.start : first.end] == first.quote
    assert len(first.quote) <= 300, first.quote


def _start_of(transcript: str, text: str) -> int:
    """The start, in milliseconds, of the cue that says `text`."""
    lines = transcript.split("\n")
    timing = lines[next(i for i, line in enumerate(lines) if text in line) - 1]
    hours, minutes, seconds = timing.split(" --> ")[0].split(":")
    return round(((int(hours) * 60 + int(minutes)) * 60 + float(seconds)) * 1000)

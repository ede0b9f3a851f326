"""Subtitles beyond the common writers: REGION blocks, speaker turns told by the text, long and UTF-16 files."""

from __future__ import annotations

import time

import pytest

from rag.ingest.readers import Unreadable, subtitles

REGION_VTT = """WEBVTT

REGION
id:fred
width:40%
lines:3

00:00:00.000 --> 00:00:02.000 region:fred align:left
<v Fred>hi there &lt;all&gt;</v>
"""


def test_region_blocks_hold_no_cue():
    record = subtitles.read(REGION_VTT.encode())
    assert record.text == "Fred: hi there <all>" and record.sections == ((0, "at 00:00:00"),)


def test_speaker_turns_told_by_the_text_start_paragraphs():
    """Broadcast captions mark a new speaker with ">>"; Zoom writes "Name: " into the cue text."""
    cues = ["Ann Lee: we start now", "Ann Lee: with the roads", "Bob: fine by me", ">> and now the weather", "sunny"]
    raw = "".join(f"{n}\n00:00:{n:02d},000 --> 00:00:{n:02d},900\n{text}\n\n" for n, text in enumerate(cues, 1))
    record = subtitles.read(raw.encode())
    assert record.text == (
        "Ann Lee: we start now\nAnn Lee: with the roads\n\nBob: fine by me\n\n>> and now the weather\nsunny"
    )


def test_an_unpunctuated_transcript_keeps_one_cue_per_line_even_mid_sentence():
    raw = "WEBVTT\n\n00:01.000 --> 00:02.000\n<v Ann>we will need to\n\n00:02.000 --> 00:03.000\n<v Ann>raise it\n"
    assert subtitles.read(raw.encode()).text == "Ann: we will need to\nAnn: raise it"


def test_plausible_reads_only_the_head_of_a_long_file_in_any_common_encoding():
    cues = "".join(f"{n}\n00:00:01,000 --> 00:00:02,000\nligne numéro {n}\n\n" for n in range(1, 5000))
    assert len(cues.encode("utf-16")) > subtitles.HEAD_BYTES
    for encoding in ("utf-8", "utf-16", "cp1252"):
        assert subtitles.plausible(cues.encode(encoding)), encoding
    assert subtitles.read(cues.encode("utf-16")).text.startswith("ligne numéro 1\n")


def test_hostile_input_is_read_in_bounded_time():
    tags = ("<v " * 50_000) + "\n"
    raw = f"1\n00:00:01,000 --> 00:00:02,000\n{tags}{'<b' * 100_000}\n\n" + "-->\n" * 100_000
    began = time.monotonic()
    record = subtitles.read(raw.encode())  # an unclosed tag is text, as a browser shows it
    assert time.monotonic() - began < 5
    assert record.text.startswith("<v <v") and len(record.sections) == 1


def test_the_cue_limit_counts_unreadable_timings_too(monkeypatch):
    monkeypatch.setattr(subtitles, "MAX_CUES", 3)
    raw = "".join(f"{n}\nbroken --> timing\ntext\n\n" for n in range(1, 5))
    with pytest.raises(Unreadable, match="over 3 cues"):
        subtitles.read(raw.encode())

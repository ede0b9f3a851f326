"""Meeting transcripts and captions (.srt, .vtt): one cue per line, each labelled with the time it starts.

SRT (numbered cues, `00:01:02,500 --> 00:01:05,000`) and WebVTT (a `WEBVTT` header, NOTE, STYLE and REGION
blocks, optional cue identifiers, cue settings after the timing, hours optional) are read by one parser: a cue
is a timing line and the text lines after it. Tags are removed and entities decoded; a voice tag (`<v Ann Lee>`)
names the line's speaker ("Ann Lee: …"). A pause of more than PAUSE_SECONDS or a new speaker starts a new
paragraph. In a punctuated transcript a cue that carries on the sentence of the one before (same speaker, no
pause) joins its line, so that a sentence is quoted whole; an unpunctuated one keeps one cue per line, which
the chunker reads line by line. Rolling captions (YouTube's automatic ones repeat the line above the new one)
keep each line once.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass

from rag.ingest.chunking import LINES_SHARE
from rag.ingest.readers import TextRecord, Unreadable
from rag.ingest.readers.text import decode

KIND = "subtitles"
NAME = "subtitle file (.srt or .vtt)"
SUFFIXES = (".srt", ".vtt")
MAX_CUES = 200_000
"""Most cues read from one file (a feature film has ~1,500, a day of meetings ~20,000)."""
PAUSE_SECONDS = 5.0
"""A silence longer than this between two cues starts a new paragraph."""
FLASH_MS = 100
"""A cue this short that only repeats the line above is a rolling caption's still frame, not speech."""
HEAD_BYTES = 65_536
"""How much of a file `plausible` decodes to find its first cue."""

_SIGNATURE = re.compile(rb"^(?:\xef\xbb\xbf)?WEBVTT(?:[ \t\r\n]|$)")
_UTF16_SIGNATURES = tuple("\ufeffWEBVTT".encode(codec) for codec in ("utf-16-le", "utf-16-be"))
_TIME = r"(?:(\d{1,5}):)?([0-5]?\d):([0-5]?\d)(?:[.,](\d{1,3}))?"
_TIMING = re.compile(rf"^[ \t]*{_TIME}[ \t]*-->[ \t]*{_TIME}(?:[ \t]|$)")
_CLOCKLIKE = re.compile(r"^[ \t]*\d{1,5}:\d\d")
_BLOCK = re.compile(r"[^\n]+(?:\n[^\n]+)*")  # lines up to an empty line
_NOT_A_CUE = re.compile(r"^(?:WEBVTT|NOTE|STYLE|REGION)(?:[ \t]|$)")
_VOICE = re.compile(r"<v(?:\.[^\s<>]*)?(?:[ \t]+([^<>]*))?>")
_TAG = re.compile(r"</?[A-Za-z][^\s<>./]*(?:\.[^\s<>]*)?(?:[ \t][^<>]*)?>|<\d{1,5}(?::\d{1,2}){1,2}(?:[.,]\d{1,3})?>")
_OVERRIDE = re.compile(r"\{\\[^{}\n]*\}")  # ASS override codes that converters leave in SRT: {\an8}
_NAMED = re.compile(r"^([A-Z][\w'’.-]*(?: [A-Z0-9][\w'’.-]*){0,3}):\s")  # "Ann Lee: …", "Speaker 2: …"
_ENDS_SENTENCE = re.compile(r"[.!?…][\"'”’»)\]]*$")


@dataclass(frozen=True)
class Cue:
    """One cue as written: its start and end in milliseconds and its text lines, tags and all."""

    start: int
    end: int
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Broken:
    """A cue whose timing line cannot be read: where it is and what it says."""

    line_number: int
    line: str


@dataclass
class Line:
    """One line of the text of record being made: its cues (start, offset in the line), speaker and end."""

    text: str
    starts: list[tuple[int, int]]
    speaker: str | None
    end: int


def sniff(data: bytes) -> bool:
    """Starts with the WebVTT signature `WEBVTT` (after an optional byte-order mark)."""
    return bool(_SIGNATURE.match(data[:16])) or data.startswith(_UTF16_SIGNATURES)


def plausible(data: bytes) -> bool:
    """Text whose first block is shaped as an SRT or WebVTT cue (SRT has no signature of its own)."""
    decoded = decode(_head(data))
    if isinstance(decoded, str):
        return False
    for match in _BLOCK.finditer(decoded[0].lstrip("\ufeff")):
        lines = match.group().split("\n")
        if not _NOT_A_CUE.match(lines[0]) and lines[0].strip():
            numbered = lines[0].strip().isdigit() and len(lines) > 1 and _CLOCKLIKE.match(lines[1])
            return bool(numbered or any(_timing(line) for line in lines[:2]))
    return False


def read(data: bytes) -> TextRecord:
    """The cues' text, a line per cue (or per sentence carried over cues) with its speaker, each cue's start
    labelled "at HH:MM:SS"."""
    decoded = decode(data)
    if isinstance(decoded, str):
        raise Unreadable(decoded)
    cues, broken = [], []
    for cue in _cues(decoded[0].lstrip("\ufeff")):
        if len(cues) + len(broken) >= MAX_CUES:
            raise Unreadable(f"over {MAX_CUES:,} cues; split the file into parts")
        (cues if isinstance(cue, Cue) else broken).append(cue)
    if not cues and broken:
        first = broken[0]
        raise Unreadable(
            f"no cue has a timing line that can be read (line {first.line_number}: {first.line[:80]!r}); "
            "timings look like `00:01:02,500 --> 00:01:05,000`"
        )
    if not cues:
        raise Unreadable("no subtitle cues in it (no timing lines such as `00:01:02,500 --> 00:01:05,000`)")
    return _record(cues)


def clock(milliseconds: int) -> str:
    """A time as "HH:MM:SS", hours always shown (fractions of a second dropped)."""
    seconds = milliseconds // 1000
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _head(data: bytes) -> bytes:
    """The first HEAD_BYTES of `data`, cut after a whole line so that no character is cut in two."""
    if len(data) <= HEAD_BYTES:
        return data
    head = data[:HEAD_BYTES]
    newline = {b"\xff\xfe": b"\n\x00", b"\xfe\xff": b"\x00\n"}.get(head[:2], b"\n")
    cut = head.rfind(newline)
    return head[: cut + len(newline)] if cut > 0 else head


def _timing(line: str) -> tuple[int, int] | None:
    """Start and end in milliseconds of a timing line (`00:01:02,500 --> 00:01:05,000 align:start`), or None."""
    match = _TIMING.match(line) if "-->" in line else None
    if not match:
        return None
    parts = match.groups()
    return _milliseconds(*parts[:4]), _milliseconds(*parts[4:])


def _milliseconds(hours: str | None, minutes: str, seconds: str, fraction: str | None) -> int:
    return ((int(hours or 0) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int((fraction or "0").ljust(3, "0"))


def _cues(text: str) -> Iterator[Cue | Broken]:
    """The cues of a transcript in file order, and a Broken for each cue whose timing line cannot be read.

    Blocks are separated by empty lines. A block that starts no cue (no SRT number, no timing line) carries on
    the text of the cue before it; headers, NOTE, STYLE and REGION blocks hold none. A readable timing line
    inside a block also starts a cue (files whose separators hold spaces).
    """
    cue: tuple[int, int, list[str]] | None = None  # start, end, text lines: the cue being read
    number, position = 1, 0
    for match in _BLOCK.finditer(text):
        number += text.count("\n", position, match.start())
        position = match.start()
        lines = match.group().split("\n")
        if _NOT_A_CUE.match(lines[0]):
            continue
        at = _timing_line(lines)
        if at is not None:
            if cue:
                yield Cue(cue[0], cue[1], tuple(cue[2]))
            cue, lines = None, lines[at:]
            if lines and not _timing(lines[0]):
                yield Broken(number + at, lines[0])
        for line in lines:
            found = _timing(line)
            if found:
                if cue:
                    if cue[2] and cue[2][-1].strip().isdigit():  # the next cue's SRT number
                        cue[2].pop()
                    yield Cue(cue[0], cue[1], tuple(cue[2]))
                cue = (*found, [])
            elif cue:
                cue[2].append(line)
    if cue:
        yield Cue(cue[0], cue[1], tuple(cue[2]))


def _timing_line(lines: list[str]) -> int | None:
    """Where a block's timing line is (after an SRT number or a WebVTT identifier), or None for a block of text."""
    at = next((i for i, line in enumerate(lines[:2]) if "-->" in line), None)
    if at is None and lines[0].strip().isdigit():
        return 1 if len(lines) > 1 else len(lines)  # a number alone ends the cue before and starts none
    return at


def _spoken(lines: tuple[str, ...]) -> tuple[str | None, str]:
    """A cue's speaker (its first voice, if any) and its text on one line, each later voice named inline."""
    raw = " ".join(lines)
    pieces, voice, pos = [], None, 0
    for match in _VOICE.finditer(raw):
        pieces.append((voice, raw[pos : match.start()]))
        voice, pos = _plain(match.group(1) or "") or None, match.end()
    pieces.append((voice, raw[pos:]))
    parts, speaker, current = [], None, None
    for who, words in pieces:
        words = _plain(words)
        if not words:
            continue
        if not parts:
            speaker = who
        parts.append(f"{who}: {words}" if who and who != current else words)
        current = who
    return speaker, " ".join(parts)


def _plain(markup: str) -> str:
    """Cue text without tags, entities decoded, white space (no-break spaces too) collapsed."""
    return " ".join(html.unescape(_OVERRIDE.sub("", _TAG.sub("", markup))).split())


def _said(cues: list[Cue]) -> Iterator[tuple[Cue, str | None, str]]:
    """Each cue with its speaker and text, leaving out what a rolling caption repeats from the cue before."""
    previous: list[str] = []
    for cue in cues:
        plain = [_plain(line) for line in cue.lines]
        said = [i for i, line in enumerate(plain) if line]
        if previous and said and plain[said[0]] == previous[-1]:
            if len(said) == 1 and cue.end - cue.start < FLASH_MS:
                continue
            if len(said) > 1:
                cue = Cue(cue.start, cue.end, cue.lines[said[0] + 1 :])
        previous = [plain[i] for i in said] or previous
        yield cue, *_spoken(cue.lines)


def _lines(cues: list[Cue]) -> Iterator[tuple[Line, bool]]:
    """The lines of the text of record, each with whether a paragraph break comes before it."""
    said = [entry for entry in _said(cues) if entry[2]]
    punctuated = sum(bool(_ENDS_SENTENCE.search(text)) for _, _, text in said) > LINES_SHARE * len(said)
    line, break_before = None, False
    for cue, voice, text in said:
        speaker = voice or (match.group(1) if (match := _NAMED.match(text)) else None)
        if line is None:
            line = Line(text, [(cue.start, 0)], speaker, cue.end)
            continue
        pause = cue.start - line.end > PAUSE_SECONDS * 1000
        turn = (speaker is not None and speaker != line.speaker) or text.startswith(">>")
        if punctuated and not (pause or turn) and not _ENDS_SENTENCE.search(line.text):
            words = text.removeprefix(f"{speaker}: ") if speaker else text
            line.starts.append((cue.start, len(line.text) + 1))
            line.text, line.end = f"{line.text} {words}", cue.end
            continue
        yield line, break_before
        break_before = pause or turn
        line = Line(text, [(cue.start, 0)], speaker or line.speaker, cue.end)
    if line:
        yield line, break_before


def _record(cues: list[Cue]) -> TextRecord:
    """Join the lines into the text of record; each cue's start offset is labelled "at HH:MM:SS"."""
    pieces, sections, length = [], [], 0
    for line, break_before in _lines(cues):
        if pieces:
            separator = "\n\n" if break_before else "\n"
            pieces.append(separator)
            length += len(separator)
        sections.extend((length + offset, "at " + clock(start)) for start, offset in line.starts)
        pieces.append(line.text)
        length += len(line.text)
    if not pieces:
        raise Unreadable(f"its {len(cues):,} cues hold no text")
    return TextRecord(kind=KIND, text="".join(pieces), sections=tuple(sections))

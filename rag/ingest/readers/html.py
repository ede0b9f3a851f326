"""Saved web pages (.html, .htm) through the standard library's HTML parser: the main text only.

Scripts, styles, navigation, headers, footers, asides and forms are dropped; when the page
marks its main content (`<main>`, `<article>`, `role=main`) only that is kept. Headings give
the section path. Whitespace is collapsed as a browser shows it; `<pre>` keeps its lines.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from rag.ingest.readers import SECTION_SEPARATOR, TextRecord, Unreadable

KIND = "html"
NAME = "web page (HTML)"
SUFFIXES = (".html", ".htm")
DROPPED = frozenset(
    "script style noscript template svg math nav header footer aside form button select "
    "textarea iframe object canvas head".split()
)
BLOCKS = frozenset(
    "p div section article main li ul ol dl dt dd table tr thead tbody tfoot caption blockquote "
    "pre figure figcaption address h1 h2 h3 h4 h5 h6 hr td th title body html details summary".split()
)
VOID = frozenset("area base br col embed hr img input link meta source track wbr".split())
_START = re.compile(rb"^\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.IGNORECASE | re.DOTALL)
_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w-]+)", re.IGNORECASE)
MIN_WORDS = 5
"""A page with fewer words of main text than this is taken to be all scripts and navigation."""


def sniff(data: bytes) -> bool:
    """Starts with a doctype, `<html>`, `<head>` or `<body>` tag (after a BOM, spaces and comments)."""
    return bool(_START.match(data[:4096].lstrip(b"\xef\xbb\xbf")))


def plausible(data: bytes) -> bool:
    """Not a binary file (a fragment of HTML without `<html>` is still read as a page)."""
    return b"\x00" not in data[:4096] or data.startswith((b"\xff\xfe", b"\xfe\xff"))


def decode(data: bytes) -> str:
    """The page's characters: by its BOM, its `<meta charset>`, else UTF-8, else cp1252."""
    from rag.ingest.readers.text import decode as decode_text

    match = _CHARSET.search(data[:4096])
    if match and not data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode(match.group(1).decode("ascii"))
        except (LookupError, UnicodeDecodeError):
            pass
    decoded = decode_text(data)
    if isinstance(decoded, str):
        raise Unreadable(decoded)
    return decoded[0].lstrip("\ufeff")


class _MainText(HTMLParser):
    """Collects blocks of visible text with the heading path above each and whether it is main content."""

    def __init__(self, left_out: frozenset[str] = DROPPED):
        super().__init__(convert_charrefs=True)
        self.left_out = left_out
        self.stack: list[tuple[str, bool]] = []  # (tag, marks main content)
        self.dropped = 0
        self.pre = 0
        self.blocks: list[tuple[str, int, bool, tuple[str, ...]]] = []  # text, heading level, main, path
        self.current: list[str] = []
        self.level = 0
        self.headings: list[str] = []
        self.script_chars = 0

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            if tag == "br" and not self.dropped:
                self.current.append("\n")  # a line break inside the paragraph, not a new one
            elif tag == "hr":
                self._flush()
            return
        marks_main = tag in ("main", "article") or dict(attrs).get("role") == "main"
        self.stack.append((tag, marks_main))
        if tag in self.left_out:
            self.dropped += 1
        elif tag in BLOCKS:
            self._flush()
            if re.fullmatch(r"h[1-6]", tag):
                self.level = int(tag[1])
        if tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag):
        if tag in VOID or not any(t == tag for t, _ in self.stack):
            return
        while self.stack:
            open_tag, _ = self.stack.pop()
            if open_tag in self.left_out:
                self.dropped -= 1
            if open_tag in BLOCKS:
                self._flush()
            if open_tag == "pre":
                self.pre -= 1
            if open_tag == tag:
                break

    def handle_data(self, data):
        if self.dropped:
            if self.stack and self.stack[-1][0] in ("script", "style"):
                self.script_chars += len(data)
            return
        self.current.append(data if self.pre else re.sub(r"\s+", " ", data))

    def _flush(self):
        raw = "".join(self.current)
        text = raw.strip("\n") if self.pre else raw.strip()
        self.current = []
        if text.strip():
            main = any(marks for _, marks in self.stack)
            if self.level:
                self.headings = self.headings[: self.level - 1] + [" ".join(text.split())]
            self.blocks.append((text, self.level, main, tuple(self.headings)))
        self.level = 0

    def close(self):
        super().close()
        self._flush()

    def main(self) -> list[tuple[str, tuple[str, ...]]]:
        """The blocks of main content (every block when the page marks none) as (text, heading path) pairs."""
        blocks = self.blocks
        if any(main for _, _, main, _ in blocks):
            blocks = [b for b in blocks if b[2]]
        return [(text, path) for text, _, _, path in blocks]


def main_blocks(page: str, left_out: frozenset[str] = DROPPED) -> list[tuple[str, tuple[str, ...]]]:
    """The main text of a decoded page as (paragraph, heading path) pairs, for readers of formats made of HTML
    (e-book chapters, mail bodies); `left_out` names the elements dropped with everything inside them."""
    parser = _MainText(left_out)
    parser.feed(page)
    parser.close()
    return parser.main()


def read(data: bytes) -> TextRecord:
    """The main text of a page as paragraphs, with the heading path of each."""
    parser = _MainText()
    parser.feed(decode(data))
    parser.close()
    blocks = parser.main()
    words = sum(len(text.split()) for text, _ in blocks)
    if words < MIN_WORDS:
        raise Unreadable(
            "no main text: the page is scripts, styles or navigation only "
            f"({words} words of text, {parser.script_chars:,} characters of script); save the article itself"
        )
    pieces, sections, length = [], [], 0
    last_path = None
    for text, path in blocks:
        if path != last_path:
            sections.append((length, SECTION_SEPARATOR.join(path)))
            last_path = path
        pieces.append(text)
        length += len(text) + 2
    return TextRecord(kind=KIND, text="\n\n".join(pieces), sections=tuple(sections))

"""Mail (.eml: one message; .mbox: many) through the standard library's `email` package.

Each message is a section labelled "From Ann Lee · 2026-03-02 · Subject" (encoded headers decoded, the date as an
ISO date) holding its text part, or its HTML part read by the HTML reader when it has no text part. Attachments of a
format rag reads (text, PDF, Word, HTML, …) follow as sections "From … · Subject › name.pdf"; attachments inside
attached messages are not opened (one level deep). Broken encodings decode with replacement characters.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from itertools import islice

from rag.ingest import readers
from rag.ingest.readers import SECTION_SEPARATOR, TextRecord, Unreadable, html

KIND = "mail"
NAME = "mail message (.eml) or mailbox (.mbox)"
SUFFIXES = (".eml", ".mbox")
MAX_MAILBOX_BYTES = 200_000_000
"""Largest mailbox read; a larger one is refused by name (split it, by year or folder)."""
MAX_MESSAGES = 20_000
"""Most messages read from one mailbox, so that reading it ends within the extraction time limit."""
MAX_PART_DEPTH = 8
"""Deepest nesting of multipart parts searched for attachments (mail programs nest three or four)."""
_FROM_LINE = re.compile(rb"^From [^\n]*\n(?=[\x21-\x39\x3b-\x7e]+:)", re.MULTILINE)
"""A line that begins a message in an mbox: "From " and the next line a header, so that a body line an old
mail program left unquoted ("From then on …") stays in its message."""
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)
_SURROGATE = re.compile("[\ud800-\udfff]")

Piece = tuple[str, tuple[tuple[int, str], ...]]
"""A stretch of the text of record and the labels that start inside it, at offsets relative to its start."""


def sniff(data: bytes) -> bool:
    """Mail has no signature of its own (its headers are text); see `plausible`."""
    return False


def plausible(data: bytes) -> bool:
    """An mbox (starts with a "From " line) or a message whose header names its sender, subject or date."""
    if data.startswith(b"From "):
        return True
    if b"\x00" in data[:4096]:
        return False
    headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(data[:100_000])
    return any(name in headers for name in ("from", "subject", "date"))


def read(data: bytes) -> TextRecord:
    """The text of record of a message or mailbox: each message's text and readable attachments, labelled."""
    if len(data) > MAX_MAILBOX_BYTES:
        raise Unreadable(
            f"mailbox of {len(data):,} bytes is over the mail reader's {MAX_MAILBOX_BYTES:,}-byte limit; "
            "split it (by year or folder) into smaller mailboxes"
        )
    messages = _messages(data)
    pieces, found = [], 0
    for raw in messages:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        if not any(name in message for name in ("from", "subject", "date")):
            continue  # not a message: no header names its sender, subject or date
        found += 1
        try:
            pieces.extend(_message_pieces(message))
        except Exception:  # noqa: BLE001 - the email package's failure on one odd message must not lose the mailbox
            continue
    if not found:
        raise Unreadable(
            "no mail message in it (no From, Subject or Date header); save the message again from the mail program"
        )
    if not pieces:
        raise Unreadable(f"no text in its {found:,} message(s) or their attachments")
    return _assemble(pieces)


def _messages(data: bytes) -> list[bytes]:
    """The messages of an mbox (each "From " line followed by a header begins one), without the "From " line and
    with ">From " unquoted; a file not starting with "From " is one message."""
    if not data.startswith(b"From "):
        return [data]
    starts = [0] + [match.start() for match in islice(_FROM_LINE.finditer(data, 1), MAX_MESSAGES)]
    if len(starts) > MAX_MESSAGES:
        raise Unreadable(
            f"mailbox holds more than {MAX_MESSAGES:,} messages, more than the mail reader takes from one file; "
            "split it (by year or folder) into smaller mailboxes"
        )
    messages = []
    for start, end in zip(starts, starts[1:] + [len(data)]):
        head_end = data.find(b"\n", start, end)
        body = data[head_end + 1 : end] if head_end >= 0 else b""
        messages.append(_QUOTED_FROM.sub(rb"\1", body))
    return messages


def _message_pieces(message: EmailMessage) -> list[Piece]:
    """One message's body and readable attachments, each labelled with the message's label."""
    label = _label(message)
    pieces = []
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        text = _decoded(body)
        if body.get_content_subtype() == "html":
            for block, path in html.main_blocks(text):
                pieces.append((block, ((0, SECTION_SEPARATOR.join((label, *path))),)))
        elif text.strip():
            pieces.append((text.strip(), ((0, label),)))
    for part in _attachments(message, body):
        pieces.extend(_attachment_pieces(part, label))
    return pieces


def _attachments(part: EmailMessage, body: EmailMessage | None, depth: int = 0):
    """Parts with a file name in `part`, the body aside, not entering attached messages (one level deep)."""
    if depth > MAX_PART_DEPTH or (depth and part.get_content_maintype() == "message"):
        return
    if not part.is_multipart():
        if part is not body and part.get_filename():
            yield part
        return
    for sub in part.iter_parts():
        if sub is not body:
            yield from _attachments(sub, body, depth + 1)


def _attachment_pieces(part: EmailMessage, label: str) -> list[Piece]:
    """An attachment of a format rag reads as a piece labelled "message label › name", or nothing."""
    name = _clean(" ".join(str(part.get_filename()).split()))
    kind = readers.kind_of(name)
    data = part.get_payload(decode=True)
    if kind is None or kind == KIND or not isinstance(data, bytes) or not data:
        return []
    where = f"{label}{SECTION_SEPARATOR}{name}"
    if readers.content_problem(kind, data):
        return []
    if kind == "text":
        text = _decoded(part).strip()
        return [(text, ((0, where),))] if text and "\x00" not in text else []
    try:
        record = readers.read(kind, data)
    except Exception:  # noqa: BLE001 - an attachment that cannot be read is left out; the message is still read
        return []
    inner = record.sections or tuple((start, f"p. {number}") for number, start in enumerate(record.page_starts, 1))
    labels = ((0, where),) + tuple((start, f"{where}{SECTION_SEPARATOR}{text}") for start, text in inner if text)
    return [(record.text, labels)]


def _assemble(pieces: list[Piece]) -> TextRecord:
    """The pieces joined with blank lines, each label placed where its stretch of text begins."""
    texts, sections, length = [], [], 0
    for text, labels in pieces:
        for offset, label in labels:
            at = length + offset
            if sections and sections[-1][0] == at:
                sections[-1] = (at, label)
            elif not sections or sections[-1][1] != label:
                sections.append((at, label))
        texts.append(_clean(text))
        length += len(text) + 2
    return TextRecord(kind=KIND, text="\n\n".join(texts), sections=tuple(sections))


def _label(message: EmailMessage) -> str:
    """ "From Ann Lee · 2026-03-02 · Subject", leaving out what the message does not say."""
    sender = _header(message, "from")
    for name, address in email.utils.getaddresses([sender]):
        if name or address:
            sender = name or address
            break
    try:
        date = email.utils.parsedate_to_datetime(_header(message, "date")).date().isoformat()
    except (TypeError, ValueError, IndexError, OverflowError):
        date = ""
    parts = [f"From {sender}" if sender else "", date, _header(message, "subject")]
    return " · ".join(part for part in parts if part) or "message"


def _header(message: EmailMessage, name: str) -> str:
    """A header decoded (RFC 2047 words included) on one line, "" when absent or beyond repair."""
    try:
        value = message.get(name)
    except Exception:  # noqa: BLE001 - the header parser fails on some malformed headers; use the raw text
        value = next((raw for key, raw in message.raw_items() if key.lower() == name), None)
    return _clean(" ".join(str(value).split())) if value is not None else ""


def _decoded(part: EmailMessage) -> str:
    """A text part's characters by its declared charset (UTF-8, else cp1252, when none or an unknown one is
    declared), bytes that do not decode replaced by U+FFFD; newlines as LF."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset()
    try:
        text = data.decode(charset or "utf-8", errors="strict" if charset is None else "replace")
    except (LookupError, UnicodeDecodeError):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _clean(text: str) -> str:
    """`text` with lone surrogates (from undecodable header bytes) replaced, so it can be stored as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)

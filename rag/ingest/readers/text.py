"""Plain text (.txt, .md): decoded, never converted, so offsets stay offsets into the file itself."""

from __future__ import annotations

# Characters beyond ASCII that legacy single-byte text plausibly holds.
_LEGACY_PUNCTUATION = set("„“”‘’‚–—…«»°§©®€£¥·•¡¿×÷±¼½¾¹²³µ¶ªº¢¤¦¨¯´¸†‡‰‹›™\xa0\xad")


def decode(data: bytes) -> tuple[str, str] | str:
    """Decoded text with universal newlines and the encoding used, or the reason it cannot be read.

    UTF-8 text decodes exactly as `Path.read_text(encoding="utf-8")` does, so offsets into
    it can be checked by anyone with the file.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return _newlines(data.decode("utf-16", errors="strict")), "utf-16"
        except UnicodeDecodeError:
            return "starts with a UTF-16 byte-order mark but is not valid UTF-16; save it as UTF-8"
    if b"\x00" in data:
        return "binary file (holds NUL bytes); only text files are indexed"
    try:
        return _newlines(data.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        text = None
    if text is not None and _looks_like_legacy_text(text):
        return _newlines(text), "cp1252"
    return "not valid UTF-8 and its encoding cannot be told reliably; save it as UTF-8"


def _looks_like_legacy_text(text: str) -> bool:
    """True when every non-ASCII character is a letter or common punctuation (Latin-1 / cp1252 prose)."""
    unusual = [ch for ch in text if ord(ch) > 127 and not ch.isalpha() and ch not in _LEGACY_PUNCTUATION]
    controls = [ch for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f"]
    return not unusual and not controls


def _newlines(text: str) -> str:
    """Translate CRLF and CR to LF, as Python's text mode does."""
    return text.replace("\r\n", "\n").replace("\r", "\n")

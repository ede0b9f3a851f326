"""Zip-based formats (Word, PowerPoint, Excel, EPUB): the archive is checked before anything inflates it, so a
zip bomb is refused by its declared sizes and a file that is not a zip never reaches an XML parser."""

from __future__ import annotations

import io
import zipfile

from rag.ingest.readers import Unreadable

MAX_INFLATED_BYTES = 200_000_000
"""Most bytes an archive may inflate to; office documents of thousands of pages stay far below."""
MAX_RATIO = 200
"""Largest compression ratio of one member larger than 1 MB (XML compresses about 10:1)."""


def holds(data: bytes, member: str) -> bool:
    """True for a zip archive that holds `member` (a format's signature file, such as `word/document.xml`)."""
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return member in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def check(data: bytes, member: str, name: str) -> None:
    """Unreadable unless `data` is a sound zip holding `member` whose members inflate to a sane size; `name` says
    what the format is called ("Word", "PowerPoint") in the message."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        raise Unreadable(
            f"not a {name} file: it should be a zip archive and this is not one (damaged, or another format)"
        ) from None
    with archive:
        members = archive.infolist()
        if member not in {m.filename for m in members}:
            raise Unreadable(f"a zip archive without {member}, so not a {name} document")
        total = sum(m.file_size for m in members)
        if total > MAX_INFLATED_BYTES:
            raise Unreadable(
                f"its archive inflates to {total:,} bytes, over {MAX_INFLATED_BYTES:,}: refused as a zip bomb"
            )
        for item in members:
            if item.file_size > 1_000_000 and item.file_size > MAX_RATIO * max(item.compress_size, 1):
                raise Unreadable(
                    f"{item.filename} inflates {item.file_size // max(item.compress_size, 1):,}-fold: "
                    "refused as a zip bomb"
                )

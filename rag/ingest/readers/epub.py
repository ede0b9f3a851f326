"""E-books (.epub) through the standard library: the spine's chapters in reading order, headings as the section path.

An EPUB is a zip archive: `META-INF/container.xml` names the package (OPF) file, whose spine lists the book's
XHTML documents in reading order. Each document is read by the HTML reader's parser; the documents are joined
with blank lines. The archive is checked before anything inflates it, every path the book names must stay inside
it, and a book whose chapters are encrypted (DRM) is refused by name rather than read as noise.
"""

from __future__ import annotations

import io
import posixpath
import zipfile
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

from rag.ingest.readers import SECTION_SEPARATOR, TextRecord, Unreadable, archive, html

KIND = "epub"
NAME = "book in EPUB format"
SUFFIXES = (".epub",)
CONTAINER = "META-INF/container.xml"
ENCRYPTION = "META-INF/encryption.xml"
MIMETYPE = b"application/epub+zip"
DOCUMENT_TYPES = frozenset({"application/xhtml+xml", "text/html", "application/html"})
MAX_PACKAGE_BYTES = 10_000_000
"""Largest container, package or encryption file read; a real book's package is well under 1 MB."""
KEPT_HEADER = html.DROPPED - {"header"}
"""A chapter's `<header>` holds its title (unlike a web page's, which holds the site's banner)."""


def sniff(data: bytes) -> bool:
    """A zip archive holding `META-INF/container.xml`, or whose `mimetype` member says application/epub+zip."""
    if archive.holds(data, CONTAINER):
        return True
    return data.startswith(b"PK\x03\x04") and data[30:38] == b"mimetype" and MIMETYPE in data[38:100]


def check_archive(data: bytes) -> None:
    """Unreadable unless `data` is a sound EPUB zip whose members inflate to a sane size (asked of uploads too)."""
    archive.check(data, CONTAINER, "EPUB")


def read(data: bytes) -> TextRecord:
    """The text of record of an e-book: its spine's documents in reading order, with the heading path of each."""
    check_archive(data)
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        package_path = _package_path(book)
        title, spine = _spine(_xml(book, package_path), package_path)
        _refuse_drm(book, spine)
        documents, missing = [], []
        for member in spine:
            blocks = _document(book, member)
            if blocks is None:
                missing.append(member)
            else:
                documents.append(blocks)
    if not any(documents):
        reason = f"; missing or unreadable: {', '.join(missing[:3])}" if missing else ""
        raise Unreadable(f"no readable chapter in the e-book's spine ({len(spine)} documents{reason}); export it again")
    return _record(documents, title)


def _document(book: zipfile.ZipFile, member: str) -> list[tuple[str, tuple[str, ...]]] | None:
    """The (paragraph, heading path) blocks of one spine document, or None when it is absent or undecodable."""
    try:
        page = html.decode(book.read(member))
    except (KeyError, Unreadable, zipfile.BadZipFile, OSError, ValueError):
        return None
    return html.main_blocks(page, left_out=KEPT_HEADER)


def _record(documents: list[list[tuple[str, tuple[str, ...]]]], title: str) -> TextRecord:
    """Join the documents' blocks with blank lines; text before a document's first heading keeps the heading above
    it (a chapter split over two files), and text before the book's first heading is labelled with the title."""
    pieces, sections, length, label = [], [], 0, None
    for blocks in documents:
        inherited = label
        for text, path in blocks:
            here = SECTION_SEPARATOR.join(path) if path else inherited or title
            if here != label:
                sections.append((length, here))
                label = here
            pieces.append(text)
            length += len(text) + 2
    return TextRecord(kind=KIND, text="\n\n".join(pieces), sections=tuple(sections))


def _package_path(book: zipfile.ZipFile) -> str:
    """The package (OPF) file that container.xml names."""
    for element in _xml(book, CONTAINER).iter():
        if _local(element.tag) == "rootfile" and element.get("full-path"):
            return _inside("", element.get("full-path"))
    raise Unreadable(f"damaged e-book: {CONTAINER} names no package file; export it again")


def _spine(package: ElementTree.Element, package_path: str) -> tuple[str, list[str]]:
    """The book's title and the archive members of its spine's (X)HTML documents, in reading order."""
    folder = posixpath.dirname(package_path)
    title, items, order = "", {}, []
    for element in package.iter():
        name = _local(element.tag)
        if name == "title" and not title and element.text:
            title = " ".join(element.text.split())
        elif name == "item" and element.get("id") and element.get("href") is not None:
            items[element.get("id")] = (element.get("href"), element.get("media-type", ""))
        elif name == "itemref" and element.get("idref"):
            order.append(element.get("idref"))
    if not order:
        raise Unreadable(
            f"damaged e-book: its package {package_path} has an empty spine (no chapters); export it again"
        )
    spine = []
    for idref in order:
        href, media_type = items.get(idref, ("", ""))
        if href and media_type.split(";")[0].strip().lower() in DOCUMENT_TYPES:
            member = _inside(folder, href)
            if member and member not in spine:
                spine.append(member)
    return title, spine


def _refuse_drm(book: zipfile.ZipFile, spine: list[str]) -> None:
    """Unreadable when META-INF/encryption.xml covers any chapter (font obfuscation alone is fine)."""
    if ENCRYPTION not in book.namelist():
        return
    try:
        encryption = _xml(book, ENCRYPTION)
    except Unreadable:
        return  # a damaged encryption file: the chapters themselves tell whether they can be read
    covered = {
        posixpath.normpath(unquote(element.get("URI", "")))
        for element in encryption.iter()
        if _local(element.tag) == "CipherReference"
    }
    locked = [member for member in spine if member in covered]
    if locked:
        raise Unreadable(
            f"encrypted (DRM) e-book: its chapters are locked to the seller's reading app ({len(locked)} of "
            f"{len(spine)} documents encrypted); index a DRM-free copy"
        )


def _inside(folder: str, href: str) -> str:
    """The archive member `href` (relative to `folder`) names, "" for a link to the web; Unreadable for a path that
    leaves the book (`../`, an absolute path)."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc:
        return ""
    path = unquote(parts.path)
    member = posixpath.normpath(posixpath.join(folder, path))
    if path.startswith("/") or member == ".." or member.startswith("../"):
        raise Unreadable(f"the e-book names a file outside itself ({href!r}): refused as damaged or hostile")
    return member


def _xml(book: zipfile.ZipFile, member: str) -> ElementTree.Element:
    """A small XML member parsed (expat refuses entity expansion bombs; external entities are never fetched)."""
    try:
        info = book.getinfo(member)
    except KeyError:
        raise Unreadable(f"damaged e-book: {member} is missing from the archive; export it again") from None
    if info.file_size > MAX_PACKAGE_BYTES:
        raise Unreadable(f"{member} is {info.file_size:,} bytes, over {MAX_PACKAGE_BYTES:,}: not a sound e-book")
    try:
        return ElementTree.fromstring(book.read(info))
    except (ElementTree.ParseError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise Unreadable(f"damaged e-book: {member} is not well-formed XML ({error}); export it again") from None


def _local(tag: object) -> str:
    """An element's name without its namespace (`{http://www.idpf.org/2007/opf}item` → `item`)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""

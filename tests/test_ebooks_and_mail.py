"""E-books (.epub) and mail (.eml, .mbox): the text of record, its section labels, and the files refused by name."""

from __future__ import annotations

import io
import mailbox
import re
import zipfile
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from rag.ingest import readers
from rag.ingest.readers import Unreadable, epub, mail

CHAPTER_1 = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<head><title>Chapter 1</title><style>p { margin: 0 }</style></head>
<body><section epub:type="chapter"><header><h1>Chapter 1</h1><h2>The harbour</h2></header>
<p>The ferry left the harbour at dawn, as it had every morning for forty years.</p>
<p>Nobody on board noticed the fog rolling in from the west.<br/>Not even the captain.</p>
</section></body></html>"""
CHAPTER_2 = """<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Chapter 2</title></head>
<body><h1>Chapter 2</h1><h2>The lighthouse</h2>
<p>The lighthouse keeper, Maren Holt, kept a ledger of every ship that passed the point.</p>
<p>She recorded exactly 1,284 ships in the winter of the great storm.</p>
</body></html>"""
CONTINUED = """<html xmlns="http://www.w3.org/1999/xhtml"><body>
<p>The ledger is still kept in the village museum.</p></body></html>"""
NAV = """<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"><body>
<nav epub:type="toc"><ol><li><a href="ch1.xhtml">Chapter 1</a></li></ol></nav></body></html>"""
CONTAINER = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>
</container>"""


def package(items: list[tuple[str, str, str]], spine: list[str], title: str = "The Keeper's Ledger") -> str:
    """An OPF package: `items` are (id, href, media type); `spine` the ids in reading order."""
    manifest = "".join(f'<item id="{i}" href="{href}" media-type="{kind}"/>' for i, href, kind in items)
    refs = "".join(f'<itemref idref="{i}"/>' for i in spine)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:identifier id="id">urn:x</dc:identifier>
<dc:title>{title}</dc:title><dc:language>en</dc:language></metadata>
<manifest>{manifest}</manifest><spine>{refs}</spine></package>"""


XHTML = "application/xhtml+xml"
BOOK_ITEMS = [("nav", "nav.xhtml", XHTML), ("c1", "ch1.xhtml", XHTML), ("c2", "text/ch%202.xhtml", XHTML)]


def epub_bytes(members: dict[str, str | bytes], opf: str | None = None) -> bytes:
    """An EPUB as a reader writes one: `mimetype` stored first, then container.xml, the package and `members`."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as book:
        book.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        book.writestr("META-INF/container.xml", CONTAINER)
        book.writestr("OEBPS/content.opf", opf or package(BOOK_ITEMS, ["nav", "c1", "c2"]))
        for name, content in members.items():
            book.writestr(name, content)
    return out.getvalue()


def book() -> bytes:
    return epub_bytes({"OEBPS/nav.xhtml": NAV, "OEBPS/ch1.xhtml": CHAPTER_1, "OEBPS/text/ch 2.xhtml": CHAPTER_2})


def test_an_epub_reads_its_spine_in_order_with_chapter_headings_as_the_section_path():
    data = book()
    assert epub.sniff(data) and readers.kind_of("Keeper.EPUB") == "epub" and readers.sniff(data) == "epub"
    record = readers.read("epub", data)
    assert record.text == (
        "Chapter 1\n\nThe harbour\n\n"
        "The ferry left the harbour at dawn, as it had every morning for forty years.\n\n"
        "Nobody on board noticed the fog rolling in from the west.\nNot even the captain.\n\n"
        "Chapter 2\n\nThe lighthouse\n\n"
        "The lighthouse keeper, Maren Holt, kept a ledger of every ship that passed the point.\n\n"
        "She recorded exactly 1,284 ships in the winter of the great storm."
    )
    assert record.section_of(record.text.index("The ferry")) == "Chapter 1 › The harbour"
    assert record.section_of(record.text.index("exactly 1,284")) == "Chapter 2 › The lighthouse"
    assert "Chapter 1</a>" not in record.text and "margin" not in record.text  # navigation and styles left out


def test_a_chapter_continued_in_a_second_file_keeps_its_heading_and_front_matter_gets_the_title():
    items = [("t", "title.xhtml", XHTML), ("c2", "ch2.xhtml", XHTML), ("c2b", "ch2b.xhtml", XHTML)]
    front = "<html><body><p>For the keepers of every light on the coast.</p></body></html>"
    data = epub_bytes(
        {"OEBPS/title.xhtml": front, "OEBPS/ch2.xhtml": CHAPTER_2, "OEBPS/ch2b.xhtml": CONTINUED},
        package(items, ["t", "c2", "c2b"]),
    )
    record = epub.read(data)
    assert record.section_of(0) == "The Keeper's Ledger"
    assert record.section_of(record.text.index("village museum")) == "Chapter 2 › The lighthouse"


def test_an_epub_with_only_a_mimetype_member_is_still_sniffed_as_one_and_refused_by_name():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as broken:
        broken.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        broken.writestr("OEBPS/ch1.xhtml", CHAPTER_1)
    assert epub.sniff(out.getvalue())
    with pytest.raises(Unreadable, match="without META-INF/container.xml"):
        epub.read(out.getvalue())


def zip_bomb_epub() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        bomb.writestr("META-INF/container.xml", CONTAINER)
        with bomb.open("OEBPS/ch1.xhtml", "w", force_zip64=True) as member:
            for _ in range(20):
                member.write(b"\0" * (1 << 20))
    return out.getvalue()


ENCRYPTION = """<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container"
 xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>
<enc:EncryptionMethod Algorithm="{algorithm}"/>
<enc:CipherData><enc:CipherReference URI="{uri}"/></enc:CipherData></enc:EncryptedData></encryption>"""
AES = "http://www.w3.org/2001/04/xmlenc#aes128-cbc"


def drm_epub() -> bytes:
    locked = ENCRYPTION.format(algorithm=AES, uri="OEBPS/text/ch%202.xhtml")
    return epub_bytes({"META-INF/encryption.xml": locked, "OEBPS/ch1.xhtml": b"\x93\x8f\xfe" * 40})


def path_trick_epub() -> bytes:
    opf = package([("c1", "../../../etc/passwd", XHTML)], ["c1"])
    return epub_bytes({"OEBPS/ch1.xhtml": CHAPTER_1}, opf)


EPUB_REFUSALS = {
    "zip bomb": (zip_bomb_epub, "refused as a zip bomb"),
    "DRM": (drm_epub, "encrypted (DRM) e-book: its chapters are locked to the seller's reading app (1 of 3"),
    "path trick": (path_trick_epub, "names a file outside itself ('../../../etc/passwd')"),
    "missing chapters": (lambda: epub_bytes({}), "no readable chapter in the e-book's spine (3 documents; missing"),
    "empty spine": (lambda: epub_bytes({}, package(BOOK_ITEMS, [])), "has an empty spine"),
    "bad package": (lambda: epub_bytes({}, "<package><spine>"), "OEBPS/content.opf is not well-formed XML"),
    "not a zip": (lambda: b"PK\x03\x04 truncated", "not a EPUB file: it should be a zip archive"),
}


@pytest.mark.parametrize("make, reason", EPUB_REFUSALS.values(), ids=EPUB_REFUSALS)
def test_hostile_and_broken_epubs_are_refused_with_their_reason(make, reason):
    with pytest.raises(Unreadable, match=re.escape(reason)):
        epub.read(make())


def test_font_obfuscation_is_not_drm_and_a_missing_chapter_is_passed_over():
    fonts = ENCRYPTION.format(algorithm="http://www.idpf.org/2008/embedding", uri="OEBPS/fonts/serif.otf")
    data = epub_bytes({"META-INF/encryption.xml": fonts, "OEBPS/ch1.xhtml": CHAPTER_1})
    record = epub.read(data)
    assert record.text.startswith("Chapter 1") and "Chapter 2" not in record.text


def test_an_epub_named_as_text_or_word_is_named_by_its_content():
    assert readers.content_problem("docx", book()) == (
        "named .docx but its content is a EPUB file; rename it to match its content"
    )
    assert "its content is not a book in EPUB format" in readers.content_problem("epub", b"just words")


WHEN = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)


def message(subject: str, body: str, sender: str = "Ann Lee <ann@example.org>", when=WHEN, html_body=None):
    note = EmailMessage()
    note["From"], note["To"], note["Subject"] = sender, "team@example.org", subject
    note["Date"] = format_datetime(when)
    if body:
        note.set_content(body)
    if html_body:
        note.add_alternative(html_body, subtype="html") if body else note.set_content(html_body, subtype="html")
    return note


def test_an_eml_is_labelled_by_sender_date_and_decoded_subject_and_reads_its_text_attachment():
    note = message("Café budget — spring fair", "The stall fee is 40 euros this year.\n\nSee the list attached.\n")
    note.add_attachment("Tea urn\nBunting\nFloat of 50 euros\n", filename="checklist.txt")
    note.add_attachment(b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png", filename="poster.png")
    data = note.as_bytes()
    assert b"=?utf-8?" in data  # the subject is sent RFC 2047 encoded
    assert mail.plausible(data) and not readers.content_problem("mail", data) and readers.kind_of("a.eml") == "mail"
    record = readers.read("mail", data)
    label = "From Ann Lee · 2026-03-02 · Café budget — spring fair"
    assert record.text == (
        "The stall fee is 40 euros this year.\n\nSee the list attached.\n\nTea urn\nBunting\nFloat of 50 euros"
    )
    assert record.sections == ((0, label), (record.text.index("Tea urn"), label + " › checklist.txt"))


def test_an_html_only_message_is_read_through_the_html_reader():
    page = "<html><head><style>p{}</style></head><body><h1>Minutes</h1><p>The hall is booked for May.</p></body></html>"
    record = mail.read(message("Minutes", "", sender="bob@example.org", html_body=page).as_bytes())
    assert record.text == "Minutes\n\nThe hall is booked for May."
    assert record.section_of(record.text.index("hall")) == "From bob@example.org · 2026-03-02 · Minutes › Minutes"


def write_mbox(path, notes) -> bytes:
    box = mailbox.mbox(path)
    for note in notes:
        box.add(note)
    box.flush()
    box.close()
    return path.read_bytes()


def test_an_mbox_gives_each_message_its_own_section_and_keeps_from_lines_in_bodies(tmp_path):
    first = message("Fair", "From now on the fair opens at ten.\n")
    second = message("Re: Fair", "Agreed, ten it is.\n", sender='"Lee, Carl" <carl@example.org>')
    data = write_mbox(tmp_path / "fair.mbox", [first, second])
    assert data.startswith(b"From ") and b"\n>From now on" in data
    record = readers.read("mail", data)
    assert record.text == "From now on the fair opens at ten.\n\nAgreed, ten it is."
    assert [label for _, label in record.sections] == [
        "From Ann Lee · 2026-03-02 · Fair",
        "From Lee, Carl · 2026-03-02 · Re: Fair",
    ]


def test_an_unquoted_from_line_in_a_body_stays_in_its_message():
    raw = (
        b"From ann@example.org Mon Mar  2 09:30:00 2026\nFrom: Ann <ann@example.org>\nSubject: Bridge\n\n"
        b"First line.\n\nFrom then on the bridge was closed to lorries.\nIt reopened in May.\n\n"
        b"From bob@example.org Mon Mar  2 10:30:00 2026\nFrom: Bob <bob@example.org>\nSubject: Re: Bridge\n\nOk.\n"
    )
    record = mail.read(raw)
    assert record.text == "First line.\n\nFrom then on the bridge was closed to lorries.\nIt reopened in May.\n\nOk."
    assert record.sections == ((0, "From Ann · Bridge"), (record.text.index("Ok."), "From Bob · Re: Bridge"))


def test_broken_encodings_decode_with_replacement_characters():
    raw = (
        b"From: =?x-unknown?q?Ann?= <ann@example.org>\nSubject: =?utf-8?b?Q2Fmw6k=?= \xff notes\n"
        b"Date: not a date\nContent-Type: text/plain; charset=utf-8\n\ncaf\xe9 au lait\n"
    )
    record = mail.read(raw)
    assert record.text == "caf\ufffd au lait"
    label = record.sections[0][1]
    assert label.startswith("From ") and "Café" in label and "2026" not in label
    assert label.encode("utf-8")  # no lone surrogates: the label can be stored


def test_an_unknown_charset_falls_back_to_utf8():
    raw = "From: a@example.org\nContent-Type: text/plain; charset=x-klingon\n\nnaïve plan\n".encode()
    assert mail.read(raw).text == "naïve plan"


def test_mail_that_is_not_mail_or_too_big_is_refused_with_its_reason(tmp_path, monkeypatch):
    assert not mail.plausible(b"Just some words, no headers at all.\n")
    assert "its content is not a mail message (.eml) or mailbox (.mbox)" in readers.content_problem("mail", b"\0\1")
    with pytest.raises(Unreadable, match="no mail message in it"):
        mail.read(b"Just some words, no headers at all.\n")
    with pytest.raises(Unreadable, match="no text in its 1 message"):
        mail.read(message("Empty", "").as_bytes())
    data = write_mbox(tmp_path / "many.mbox", [message(f"Note {n}", f"Note number {n}.\n") for n in range(4)])
    monkeypatch.setattr(mail, "MAX_MESSAGES", 3)
    with pytest.raises(Unreadable, match="mailbox holds more than 3 messages"):
        mail.read(data)
    monkeypatch.setattr(mail, "MAX_MAILBOX_BYTES", 100)
    with pytest.raises(Unreadable, match=r"mailbox of [\d,]+ bytes is over the mail reader's 100-byte limit"):
        mail.read(data)


def test_an_attached_message_is_not_opened_and_a_docx_attachment_is_read_with_its_headings(tmp_path):
    import writers

    writers.word_document(tmp_path / "plan.docx", [("h1", "Budget"), ("p", "Spend 300 euros on tents.")])
    inner = message("Old thread", "Old words.\n")
    inner.add_attachment("Deep secret.\n", filename="deep.txt")
    outer = message("Plan", "See attached.\n")
    outer.add_attachment(
        (tmp_path / "plan.docx").read_bytes(), maintype="application", subtype="octet-stream", filename="plan.docx"
    )
    outer.add_attachment(inner)
    record = mail.read(outer.as_bytes())
    assert "Deep secret" not in record.text and "Old words" not in record.text
    assert record.section_of(record.text.index("Spend 300")) == "From Ann Lee · 2026-03-02 · Plan › plan.docx › Budget"


def test_ebook_and_mailbox_facts_are_answered_with_verified_quotes_that_name_the_chapter_and_message(
    make_settings, real_embedder, tmp_path
):
    from rag.answer.quotes import answer
    from rag.build.indexer import build
    from rag.index import store
    from rag.search import Retriever

    settings = make_settings(model=real_embedder.name, extensions=(".txt", ".epub", ".mbox"))
    (settings.corpus / "ledger.epub").write_bytes(book())
    notes = [
        message("Parking", "Visitors park behind the church hall on Saturdays.\n"),
        message(
            "Ferry timetable",
            "The winter ferry to Halsey Island leaves at 7:45 from pier three.\n",
            sender="Dora Finch <dora@example.org>",
            when=datetime(2026, 1, 14, 8, 0, tzinfo=timezone.utc),
        ),
        message("Bake sale", "Bring cakes to the school gym by noon on Friday.\n"),
    ]
    write_mbox(settings.corpus / "club.mbox", notes)
    (settings.corpus / "distractor.txt").write_text(
        "The museum café serves soup and bread at lunchtime.\n\nTickets cost four pounds for adults.\n",
        encoding="utf-8",
    )
    summary = build(settings, embedder_factory=lambda name: real_embedder)
    assert not summary.skipped
    retriever = Retriever(settings)
    loaded = store.load(settings.index)
    for question, source, fact, section in [
        (
            "How many ships did the lighthouse keeper record in the winter of the storm?",
            "ledger.epub",
            "1,284 ships",
            "Chapter 2 › The lighthouse",
        ),
        (
            "When does the winter ferry to Halsey Island leave?",
            "club.mbox",
            "7:45",
            "From Dora Finch · 2026-01-14 · Ferry timetable",
        ),
    ]:
        result = answer(question, retriever, settings)
        assert not result.abstained, result.text
        first = result.citations[0]
        assert first.source == source and fact in first.quote and first.section == section
        record = readers.load_record(loaded.texts_folder(source), loaded.manifest.files[source].sha256)
        assert record.text[first.start : first.end] == first.quote


def test_a_message_that_is_only_an_attachment_is_read():
    note = EmailMessage()
    note["From"], note["Subject"] = "ann@example.org", "Notes"
    note.set_content(b"Bring the long ladder on Sunday.\n", maintype="text", subtype="plain", filename="todo.txt")
    record = mail.read(note.as_bytes())
    assert record.text == "Bring the long ladder on Sunday." and record.sections == (
        (0, "From ann@example.org · Notes › todo.txt"),
    )

"""PDF, Word and HTML through the whole pipeline: build, cite to the page, verify, skip bad files, stay incremental."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
import writers
from conftest import write_corpus
from fakes import FakeEmbedder
from test_readers import LEFT_1, LEFT_2, PAGE, PAGE_2_LEFT, PAGE_2_RIGHT, RIGHT_1, WORD_BLOCKS

from rag.answer.candidates import Candidate
from rag.answer.quotes import answer
from rag.answer.verify import verify
from rag.build.indexer import build, is_stale
from rag.index import store
from rag.ingest import readers
from rag.search import Retriever
from rag.types import Hit


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    """One of each format, bad files beside them: written once, copied into each test's corpus."""
    folder = tmp_path_factory.mktemp("documents")
    (folder / "papers").mkdir()
    writers.two_column_pdf(
        folder / "papers" / "kettles.pdf", [(LEFT_1 + [""] + LEFT_2, RIGHT_1), (PAGE_2_LEFT, PAGE_2_RIGHT)]
    )
    writers.word_document(folder / "report.docx", WORD_BLOCKS)
    (folder / "otters.html").write_text(PAGE, encoding="utf-8")
    write_corpus(folder, {"notes.md": "# Notes\n\nTea tastes best with water just off the boil.\n"})
    writers.image_only_pdf(folder / "scan.pdf")
    writers.encrypted(folder / "papers" / "kettles.pdf", folder / "locked.pdf")
    data = (folder / "papers" / "kettles.pdf").read_bytes()
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 2])
    (folder / "fake.pdf").write_text("I am a text file wearing a .pdf name.", encoding="utf-8")
    (folder / "notzip.docx").write_bytes(b"PK\x03\x04 truncated")
    writers.zip_bomb(folder / "bomb.docx", megabytes=20)
    (folder / "menu.html").write_text("<html><body><nav>Home | Shop</nav><script>x()</script></body></html>")
    (folder / "pdf-in-disguise.txt").write_bytes(data)
    return folder


@pytest.fixture
def corpus(make_settings, documents):
    """Settings for a private copy of the documents (OCR off: tests/test_ocr.py reads scans for real)."""
    settings = make_settings(min_score=0.0, ocr="off")
    shutil.copytree(documents, settings.corpus, dirs_exist_ok=True)
    return settings


SKIPS = {
    "scan.pdf": "its pages are scanned images and OCR is off (RAG_OCR=off); set RAG_OCR=auto",
    "locked.pdf": "encrypted (password-protected) PDF",
    "truncated.pdf": "damaged or truncated PDF",
    "fake.pdf": "named .pdf but its content is not a PDF file",
    "notzip.docx": "named .docx but its content is not a Word (.docx) file",
    "bomb.docx": "refused as a zip bomb",
    "menu.html": "no main text",
    "pdf-in-disguise.txt": "named as text but its content is a PDF file",
}


def fake_factory():
    shared = FakeEmbedder()
    return shared, (lambda name: shared)


def test_each_bad_file_is_skipped_with_its_reason_and_the_rest_is_indexed(corpus):
    _, factory = fake_factory()
    summary = build(corpus, embedder_factory=factory)
    assert set(summary.skipped) == set(SKIPS)
    for source, reason in SKIPS.items():
        assert reason in summary.skipped[source], source
    manifest = store.load(corpus.index).manifest
    assert sorted(manifest.files) == ["notes.md", "otters.html", "papers/kettles.pdf", "report.docx"]
    assert {name: entry.kind for name, entry in manifest.files.items()} == {
        "notes.md": "text",
        "otters.html": "html",
        "papers/kettles.pdf": "pdf",
        "report.docx": "docx",
    }


def test_passages_are_offsets_into_the_stored_text_of_record(corpus):
    _, factory = fake_factory()
    build(corpus, embedder_factory=factory)
    loaded = store.load(corpus.index)
    for passage in loaded.passages:
        entry = loaded.manifest.files[passage.source]
        if entry.kind == "text":
            text = (corpus.corpus / passage.source).read_text(encoding="utf-8")
        else:
            text = readers.load_record(loaded.texts_folder(passage.source), entry.sha256).text
        assert text[passage.start : passage.end] == passage.text
        assert "Journal of Reliable Kettles" not in passage.text  # running headers are never in a passage
        assert "tracking" not in passage.text and "Home" not in passage.text and "Copyright" not in passage.text


def ask(settings, question):
    _, factory = fake_factory()
    return answer(question, Retriever(settings, embedder_factory=factory), settings)


def test_pdf_citations_give_the_page_and_verify_against_the_text_of_record(corpus):
    _, factory = fake_factory()
    build(corpus, embedder_factory=factory)
    result = ask(corpus, "When was the first automatic switch sold?")
    first = result.citations[0]
    assert first.source == "papers/kettles.pdf" and "sold in 1955" in first.quote
    loaded = store.load(corpus.index)
    record = readers.load_record(loaded.texts_folder(first.source), loaded.manifest.files[first.source].sha256)
    assert record.text[first.start : first.end] == first.quote
    assert first.page == 1 and first.page_label is None
    assert first.pages[0] == 1 and first.where().startswith("p")
    cited = json.loads(json.dumps(result.to_dict()))["citations"][0]
    assert {"page", "page_label", "pages", "section"} <= set(cited) and cited["page"] == 1


def test_a_quote_across_a_page_break_lists_both_pages(corpus):
    _, factory = fake_factory()
    build(corpus, embedder_factory=factory)
    retriever = Retriever(corpus, embedder_factory=factory)
    loaded = retriever.index
    record = readers.load_record(
        loaded.texts_folder("papers/kettles.pdf"), loaded.manifest.files["papers/kettles.pdf"].sha256
    )
    quote = "and the idea that a kettle flips itself off spread to every kitchen in the whole country and far beyond"
    start = record.text.index(quote)
    passage = next(p for p in loaded.passages if p.start <= start and start + len(quote) <= p.end)
    candidate = Candidate(Hit(passage, 1.0), start, start + len(quote), quote, 1.0)
    (citation,) = verify([candidate], {None: (corpus.corpus, loaded)})
    assert citation.pages == (1, 2) and citation.page == 1 and citation.where() == "pp. 1–2"


def test_word_and_html_citations_give_the_heading_path(corpus):
    _, factory = fake_factory()
    build(corpus, embedder_factory=factory)
    word = ask(corpus, "How much tap water did each kettle hold, at how many degrees?")
    cited = next(c for c in word.citations if c.source == "report.docx")
    assert cited.section == "2 Methods › 2.1 Data" and cited.page is None and cited.pages == ()
    page = ask(corpus, "What do sea otters eat, urchins crabs clams?")
    cited = next(c for c in page.citations if c.source == "otters.html")
    assert cited.section == "Sea otters › Food"


def test_page_labels_reach_the_citation(make_settings, tmp_path):
    settings = make_settings(min_score=0.0)
    writers.two_column_pdf(tmp_path / "plain.pdf", [(LEFT_1, RIGHT_1), (PAGE_2_LEFT, PAGE_2_RIGHT)])
    writers.with_page_labels(tmp_path / "plain.pdf", settings.corpus / "book.pdf", roman_first=1)
    _, factory = fake_factory()
    build(settings, embedder_factory=factory)
    result = ask(settings, "Descale them every four weeks with white vinegar")
    cited = next(c for c in result.citations if "Descale" in c.quote)
    assert cited.page == 2 and cited.page_label == "1" and cited.where() == "p. 2 (printed 1)"
    early = ask(settings, "When was the first automatic switch sold?").citations[0]
    assert early.page == 1 and early.page_label == "i"


def test_a_changed_pdf_is_not_quoted_until_rebuilt_and_a_touched_one_still_is(corpus):
    _, factory = fake_factory()
    build(corpus, embedder_factory=factory)
    path = corpus.corpus / "papers" / "kettles.pdf"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))  # same bytes, new mtime
    assert ask(corpus, "When was the first automatic switch sold?").citations[0].source == "papers/kettles.pdf"
    writers.two_column_pdf(path, [(["Nothing about switches here at all, only", "tea."], ["More tea."])])
    result = ask(corpus, "When was the first automatic switch sold?")
    assert all(c.source != "papers/kettles.pdf" for c in result.citations)


def test_an_unchanged_pdf_is_never_converted_again_and_its_text_is_carried_over(corpus):
    embedder, factory = fake_factory()
    first = build(corpus, embedder_factory=factory)
    assert first.files_converted == 8  # each PDF, Word and HTML file whose content matches its name, once
    old = store.load(corpus.index)
    sha = old.manifest.files["papers/kettles.pdf"].sha256
    write_corpus(corpus.corpus, {"notes.md": "# Notes\n\nGreen tea wants water well below the boil.\n"})
    embedder.embedded.clear()
    second = build(corpus, embedder_factory=factory)
    assert second.files_converted == 0 and second.files_changed == 1
    assert all("kettle" not in text.lower() for text in embedder.embedded)
    new = store.load(corpus.index)
    old_json, new_json = (readers.record_paths(v.texts_folder("papers/kettles.pdf"), sha)[0] for v in (old, new))
    assert new.folder != old.folder and os.path.samefile(old_json, new_json)  # the stored text, not rewritten
    assert set(second.skipped) == set(SKIPS)  # bad files keep their reasons without being read again
    assert not is_stale(corpus)


def test_a_changed_pdf_reembeds_only_the_passages_whose_text_changed(corpus):
    embedder, factory = fake_factory()
    build(corpus, embedder_factory=factory)
    before = {p.text for p in store.load(corpus.index).passages if p.source == "papers/kettles.pdf"}
    path = corpus.corpus / "papers" / "kettles.pdf"
    writers.two_column_pdf(path, [(LEFT_1 + [""] + LEFT_2, RIGHT_1), (PAGE_2_LEFT, ["Descale them monthly."])])
    embedder.embedded.clear()
    summary = build(corpus, embedder_factory=factory)
    assert summary.files_changed == 1 and summary.files_converted == 1
    after = {p.text for p in store.load(corpus.index).passages if p.source == "papers/kettles.pdf"}
    assert set(embedder.embedded) == after - before and 0 < len(embedder.embedded) < len(after)


def test_a_renamed_pdf_is_neither_converted_nor_embedded_again(corpus):
    embedder, factory = fake_factory()
    build(corpus, embedder_factory=factory)
    shutil.move(corpus.corpus / "papers" / "kettles.pdf", corpus.corpus / "kettles-2026.pdf")
    embedder.embedded.clear()
    summary = build(corpus, embedder_factory=factory)
    assert summary.files_renamed == 1 and summary.files_converted == 0 and embedder.embedded == []
    result = ask(corpus, "When was the first automatic switch sold?")
    assert result.citations[0].source == "kettles-2026.pdf" and result.citations[0].page == 1


def test_a_file_that_hangs_its_reader_is_skipped_and_the_build_goes_on(corpus, monkeypatch):
    import functools

    from rag.build import conversion

    monkeypatch.setattr(conversion, "Extractor", functools.partial(conversion.Extractor, reader="hanging_reader:read"))
    (corpus.corpus / "hang.pdf").write_bytes(b"%PDF-1.4 hang-me")
    summary = build(corpus.replace(extract_timeout=3.0), embedder_factory=fake_factory()[1])
    assert "took longer than 3 s" in summary.skipped["hang.pdf"]
    assert "OCR is off" in summary.skipped["scan.pdf"]  # the next file got a fresh reader
    assert "papers/kettles.pdf" in store.load(corpus.index).manifest.files


def test_the_sources_panel_shows_the_cited_pdf_page_as_an_image_with_its_page_number(corpus):
    import base64
    from io import BytesIO

    from PIL import Image

    from rag.serve.page_images import cited_pages
    from rag.serve.render import chat_text, render_sources

    _, factory = fake_factory()
    build(corpus, embedder_factory=factory)
    retriever = Retriever(corpus, embedder_factory=factory)
    result = answer("When was the first automatic switch sold?", retriever, corpus)
    first = result.citations[0]
    images = cited_pages(corpus.corpus, retriever.index, first)
    assert [image.page for image in images] == list(first.pages)
    panel = render_sources(result, pages=lambda c: cited_pages(corpus.corpus, retriever.index, c))
    assert f"page {first.page} of papers/kettles.pdf, quote [1] highlighted" in panel
    encoded = panel.split("src='data:image/png;base64,", 1)[1].split("'", 1)[0]
    assert Image.open(BytesIO(base64.b64decode(encoded))).size[1] == 1200
    assert f"[1] papers/kettles.pdf, {first.where()}" in chat_text(result)
    word = answer("How much tap water did each kettle hold, at how many degrees?", retriever, corpus)
    cited = next(c for c in word.citations if c.source == "report.docx")
    assert cited_pages(corpus.corpus, retriever.index, cited) == []  # Word: the passage, no picture
    assert "report.docx, 2 Methods › 2.1 Data · passage" in render_sources(word, pages=lambda c: [])
    (corpus.corpus / "papers" / "kettles.pdf").write_bytes(b"%PDF-1.4 replaced")
    assert cited_pages(corpus.corpus, retriever.index, first) == []  # a changed file is never drawn


def test_uploads_of_the_new_types_are_checked_by_their_content(tmp_path, documents):
    from rag.config import Settings
    from rag.errors import UploadRefused
    from rag.serve.uploads import add_document, delete_document, list_documents

    corpus, types, limit = tmp_path / "uploads", Settings().extensions, 5_000_000
    pdf_bytes = (documents / "papers" / "kettles.pdf").read_bytes()
    assert add_document(corpus, "kettles.pdf", pdf_bytes, types, limit)[0].name == "kettles.pdf"
    assert add_document(corpus, "report.docx", (documents / "report.docx").read_bytes(), types, limit)
    assert add_document(corpus, "otters.htm", PAGE.encode(), types, limit)
    refusals = {
        "fake.pdf": (b"plain words", "named .pdf but its content is not a PDF file"),
        "report2.docx": (pdf_bytes, "named .docx but its content is a PDF file"),
        "bomb.docx": ((documents / "bomb.docx").read_bytes(), "refused as a zip bomb"),
        "notes.txt": (pdf_bytes, "named as text but its content is a PDF file"),
        "big.pdf": (pdf_bytes + b" " * limit, "over the 5,000,000-byte upload limit"),
        "payload.svg": (b"<svg/>", "not an accepted type"),
    }
    for name, (data, reason) in refusals.items():
        with pytest.raises(UploadRefused, match=re.escape(reason)):
            add_document(corpus, name, data, types, limit)
    assert list_documents(corpus, types) == ["kettles.pdf", "otters.htm", "report.docx"]
    delete_document(corpus, "kettles.pdf", types)
    assert list_documents(corpus, types) == ["otters.htm", "report.docx"]


def test_texts_of_record_from_an_older_reader_are_read_again_embedding_only_what_changed(corpus, monkeypatch):
    """A new PDF reader version (READER_VERSION) re-reads the PDFs alone, says why, and reuses every vector
    whose passage text it did not change; the next build reads nothing."""
    from rag.ingest.readers import pdf

    _, factory = fake_factory()
    first = build(corpus, embedder_factory=factory)
    assert not is_stale(corpus) and store.load(corpus.index).manifest.readers["pdf"] == pdf.READER_VERSION
    monkeypatch.setattr(pdf, "READER_VERSION", pdf.READER_VERSION + 1)
    assert is_stale(corpus)
    again = build(corpus, embedder_factory=factory)
    assert "texts of record from an older pdf reader" in again.reason and not again.full
    # every PDF but fake.pdf (not a PDF at all), the ones that failed before too: the new reader may read them
    assert again.files_converted == 4
    assert again.passages_embedded == 0 and again.passages == first.passages  # the same text: every vector reused
    assert set(again.skipped) == set(SKIPS)
    third = build(corpus, embedder_factory=factory)
    assert third.files_converted == 0 and not third.version

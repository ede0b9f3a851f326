"""rag.ingest.corpus: which files become documents, how they decode, and why others are skipped."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rag.errors import CorpusError
from rag.ingest.corpus import decode, read_file, read_source, scan
from rag.types import Document, Skipped

CORPUS = Path(__file__).parent / "data" / "corpus"


@pytest.fixture(scope="module")
def found():
    return scan(CORPUS)


# --- scan on tests/data/corpus ----------------------------------------------------------


def test_scan_documents_are_the_readable_text_files_sorted(found):
    assert [d.source for d in found.documents] == [
        "crlf.txt",
        "latin1.txt",
        "notes.md",
        "report.txt",
        "sub/deep/nested.txt",
    ]


def test_scan_skips_are_named_with_their_problem(found):
    reasons = {s.source: s.reason for s in found.skipped}
    assert sorted(reasons) == ["binary.txt", "empty.txt", "garbage.txt"]
    assert "empty" in reasons["empty.txt"]
    assert "binary" in reasons["binary.txt"] and "NUL" in reasons["binary.txt"]
    assert "UTF-8" in reasons["garbage.txt"]


def test_scan_ignores_other_extensions(found):
    sources = {d.source for d in found.documents} | {s.source for s in found.skipped}
    assert "ignored.xyz" not in sources
    assert all(s.endswith((".txt", ".md")) for s in sources)


@pytest.mark.parametrize(
    "source, encoding, text",
    [
        ("sub/deep/nested.txt", "utf-8", "The archive index lives in the deep folder.\n"),
        (
            "latin1.txt",
            "cp1252",
            "Caf\u00e9 au lait, na\u00efve fa\u00e7ade. Herr M\u00fcller sagte: \u00abGr\u00fc\u00df Gott\u00bb.\n"
            "D\u00e9j\u00e0 vu \u00e0 l'\u00e9cole.\n",
        ),
        (
            "crlf.txt",
            "utf-8",
            "First line of a Windows file.\nSecond line, same paragraph.\n\nA new paragraph after a blank line.\n",
        ),
    ],
)
def test_scan_document_text_and_encoding(found, source, encoding, text):
    document = {d.source: d for d in found.documents}[source]
    assert document.encoding == encoding
    assert document.text == text


def test_scan_documents_carry_path_and_sha256_of_the_bytes(found):
    assert found.documents
    for document in found.documents:
        assert document.path == CORPUS / document.source
        assert document.sha256 == hashlib.sha256(document.path.read_bytes()).hexdigest()


def test_scan_utf8_documents_match_read_text(found):
    assert any(d.encoding == "utf-8" for d in found.documents)
    for document in found.documents:
        if document.encoding == "utf-8":
            assert document.text == document.path.read_text(encoding="utf-8")


def test_scan_latin1_file_is_not_utf8():
    data = (CORPUS / "latin1.txt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert data.decode("cp1252") == data.decode("latin-1")


@pytest.mark.parametrize(
    "extensions, sources",
    [
        ((".md",), ["notes.md"]),
        ((".MD",), ["notes.md"]),
        ((".xyz",), ["ignored.xyz"]),
        ((), []),
    ],
)
def test_scan_extensions(extensions, sources):
    result = scan(CORPUS, extensions=extensions)
    assert [d.source for d in result.documents] == sources
    assert result.skipped == []


def test_scan_extension_match_ignores_case(tmp_path):
    (tmp_path / "LOUD.TXT").write_text("Upper case name.", encoding="utf-8")
    (tmp_path / "quiet.Md").write_text("Mixed case name.", encoding="utf-8")
    assert [d.source for d in scan(tmp_path).documents] == ["LOUD.TXT", "quiet.Md"]


def test_scan_order_is_sorted_across_folders(tmp_path):
    for name in ["b.txt", "a/z.txt", "a.txt", "c/a.txt", "a/b/c.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"File {name}.", encoding="utf-8")
    # each folder's files first, then its sub-folders in name order
    assert [d.source for d in scan(tmp_path).documents] == ["a.txt", "b.txt", "a/z.txt", "a/b/c.txt", "c/a.txt"]


def test_scan_skips_hidden_files_and_folders(tmp_path):
    (tmp_path / ".hidden.txt").write_text("Hidden.", encoding="utf-8")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "notes.txt").write_text("Hidden folder.", encoding="utf-8")
    (tmp_path / "shown.txt").write_text("Shown.", encoding="utf-8")
    result = scan(tmp_path)
    assert [d.source for d in result.documents] == ["shown.txt"]
    assert result.skipped == []


@pytest.mark.parametrize(
    "content, reason_word",
    [
        (b"", "empty"),
        (b"   \n\t\r\n  ", "empty"),
        (b"\xff\xfe", "empty"),  # an empty UTF-16 file
        (b"a\x00b", "binary"),
        (b"\x81\x8d\x8f\x90", "UTF-8"),
    ],
)
def test_scan_skip_reasons(tmp_path, content, reason_word):
    (tmp_path / "file.txt").write_bytes(content)
    result = scan(tmp_path)
    assert result.documents == []
    assert [s.source for s in result.skipped] == ["file.txt"]
    assert reason_word in result.skipped[0].reason


@pytest.mark.parametrize("content", [b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n  \n"])
def test_scan_bom_only_file_is_empty(tmp_path, content):
    (tmp_path / "file.txt").write_bytes(content)
    result = scan(tmp_path)
    assert result.documents == []
    assert [(s.source, s.reason) for s in result.skipped] == [("file.txt", "empty file")]


# --- size limit, symlinks, missing corpus -----------------------------------------------


@pytest.mark.parametrize("size, kept", [(9, True), (10, True), (11, False)])
def test_scan_max_bytes(tmp_path, size, kept):
    (tmp_path / "file.txt").write_bytes(b"x" * size)
    result = scan(tmp_path, max_bytes=10)
    assert [d.source for d in result.documents] == (["file.txt"] if kept else [])
    if not kept:
        (skip,) = result.skipped
        assert skip.source == "file.txt"
        assert "RAG_MAX_FILE_BYTES" in skip.reason
        assert "11 bytes" in skip.reason and "10-byte" in skip.reason


@pytest.fixture
def linked(tmp_path):
    """A corpus with links: to a file outside, to a file inside, to a folder outside, and a broken one."""
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    corpus.mkdir()
    (outside / "secret.txt").write_text("Secret outside text.", encoding="utf-8")
    (outside / "folder" / "inner.txt").write_text("Inner outside text.", encoding="utf-8")
    (corpus / "real.txt").write_text("Real inside text.", encoding="utf-8")
    os.symlink(outside / "secret.txt", corpus / "link.txt")
    os.symlink("real.txt", corpus / "alias.txt")
    os.symlink(outside / "folder", corpus / "linked")
    os.symlink("nowhere.txt", corpus / "broken.txt")
    return corpus


def test_scan_symlink_outside_corpus_is_skipped_not_followed(linked):
    result = scan(linked)
    reasons = {s.source: s.reason for s in result.skipped}
    assert "outside the corpus" in reasons["link.txt"]
    assert "not followed" in reasons["link.txt"]
    assert all("Secret" not in d.text and "Inner" not in d.text for d in result.documents)


def test_scan_symlink_inside_corpus_is_read_and_linked_folder_not_entered(linked):
    result = scan(linked)
    assert [(d.source, d.text) for d in result.documents] == [
        ("alias.txt", "Real inside text."),
        ("real.txt", "Real inside text."),
    ]
    assert sorted(s.source for s in result.skipped) == ["broken.txt", "link.txt"]
    assert "broken symbolic link" in {s.source: s.reason for s in result.skipped}["broken.txt"]


def test_read_file_symlink_outside_is_not_read(linked):
    result = read_file(linked / "link.txt", "link.txt", linked.resolve())
    assert isinstance(result, Skipped)
    assert str((linked.parent / "outside" / "secret.txt").resolve()) in result.reason


@pytest.mark.parametrize("name", ["missing", "missing/deeper"])
def test_scan_missing_corpus_names_the_folder(tmp_path, name):
    folder = tmp_path / name
    with pytest.raises(CorpusError) as error:
        scan(folder)
    assert str(folder) in str(error.value)
    assert "RAG_CORPUS" in str(error.value)


def test_scan_corpus_that_is_a_file_is_an_error(tmp_path):
    (tmp_path / "file.txt").write_text("Not a folder.", encoding="utf-8")
    with pytest.raises(CorpusError, match="file.txt"):
        scan(tmp_path / "file.txt")


def test_scan_accepts_str_path():
    assert [d.source for d in scan(str(CORPUS)).documents][0] == "crlf.txt"


# --- decode -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, text",
    [
        (b"", ""),
        (b"hello", "hello"),
        ("h\u00e9llo \u2014 \u201cok\u201d".encode("utf-8"), "h\u00e9llo \u2014 \u201cok\u201d"),
        (b"\xef\xbb\xbfhi", "\ufeffhi"),  # the BOM stays, as read_text keeps it
        (b"a\r\nb", "a\nb"),
        (b"a\rb", "a\nb"),
        (b"a\r\rb", "a\n\nb"),
        (b"a\r\r\nb", "a\n\nb"),
        (b"a\n\rb", "a\n\nb"),
        (b"a\r\n\r\nb\r", "a\n\nb\n"),
        (b"\r\n", "\n"),
        (b"tab\tand\x0cfeed", "tab\tand\x0cfeed"),
        ("line\u2028sep\x85nel".encode("utf-8"), "line\u2028sep\x85nel"),  # not newlines in text mode
    ],
)
def test_decode_utf8_matches_read_text(tmp_path, data, text):
    assert decode(data) == (text, "utf-8")
    path = tmp_path / "file.txt"
    path.write_bytes(data)
    assert path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize(
    "data, text, encoding",
    [
        ("h\u00e9llo\r\nworld".encode("utf-16-le"), None, None),  # no BOM: NUL bytes, so binary
        (b"\xff\xfe" + "h\u00e9llo\r\nworld".encode("utf-16-le"), "h\u00e9llo\nworld", "utf-16"),
        (b"\xfe\xff" + "h\u00e9llo\rworld".encode("utf-16-be"), "h\u00e9llo\nworld", "utf-16"),
        (b"\xff\xfe", "", "utf-16"),
        ("caf\u00e9 na\u00efve".encode("latin-1"), "caf\u00e9 na\u00efve", "cp1252"),
        ("caf\u00e9\r\nna\u00efve\r".encode("latin-1"), "caf\u00e9\nna\u00efve\n", "cp1252"),
        (b"\x93quoted\x94 \x85 \x80 5", "\u201cquoted\u201d \u2026 \u20ac 5", "cp1252"),
        ("\u00abGr\u00fc\u00df Gott\u00bb".encode("cp1252"), "\u00abGr\u00fc\u00df Gott\u00bb", "cp1252"),
    ],
)
def test_decode_other_encodings(data, text, encoding):
    result = decode(data)
    if text is None:
        assert isinstance(result, str) and "binary" in result
    else:
        assert result == (text, encoding)


@pytest.mark.parametrize(
    "data, reason_word",
    [
        (b"\x00", "binary"),
        (b"text\x00more", "binary"),
        (b"caf\xe9\x00", "binary"),
        (b"\x81\x8d\x8f\x90", "UTF-8"),  # undefined in cp1252
        (b"caf\xe9\x07bell", "UTF-8"),  # control byte
        (b"caf\xe9\x1b[0m", "UTF-8"),  # escape sequence
        (b"caf\xe9 \xac\xad", "UTF-8"),  # not-sign and soft hyphen: not prose
        ((CORPUS / "garbage.txt").read_bytes(), "UTF-8"),
        ((CORPUS / "binary.txt").read_bytes(), "binary"),
    ],
)
def test_decode_refuses_with_reason(data, reason_word):
    result = decode(data)
    assert isinstance(result, str)
    assert reason_word in result


@pytest.mark.parametrize("data", [b"\xff\xfeA", b"\xfe\xff\x00h\x00", b"\xff\xfe\x00\xd8"])
def test_decode_truncated_utf16_gives_reason(data):
    assert isinstance(decode(data), str)


def test_scan_truncated_utf16_is_skipped_not_fatal(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xff\xfeA")
    (tmp_path / "b.txt").write_text("Fine.", encoding="utf-8")
    result = scan(tmp_path)
    assert [d.source for d in result.documents] == ["b.txt"]
    assert [s.source for s in result.skipped] == ["a.txt"]


# --- read_source ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, expected",
    [
        ("report.txt", (CORPUS / "report.txt").read_text(encoding="utf-8")),
        ("sub/deep/nested.txt", "The archive index lives in the deep folder.\n"),
        ("crlf.txt", (CORPUS / "crlf.txt").read_bytes().decode("utf-8").replace("\r\n", "\n")),
        ("latin1.txt", (CORPUS / "latin1.txt").read_bytes().decode("cp1252")),
        ("empty.txt", ""),
        ("binary.txt", None),
        ("garbage.txt", None),
        ("missing.txt", None),
        ("sub", None),  # a folder
    ],
)
def test_read_source(source, expected):
    assert read_source(CORPUS, source) == expected


def test_read_source_agrees_with_scan(found):
    assert found.documents
    for document in found.documents:
        assert read_source(CORPUS, document.source) == document.text


def test_read_source_sees_the_file_as_it_is_now(tmp_path):
    (tmp_path / "live.txt").write_text("Before.", encoding="utf-8")
    assert read_source(tmp_path, "live.txt") == "Before."
    (tmp_path / "live.txt").write_text("After.\r\n", encoding="utf-8")
    assert read_source(str(tmp_path), "live.txt") == "After.\n"


def test_read_file_returns_document(tmp_path):
    path = tmp_path / "one.md"
    path.write_bytes(b"# One\r\n")
    assert read_file(path, "one.md", tmp_path) == Document(
        "one.md",
        path,
        "# One\n",
        hashlib.sha256(b"# One\r\n").hexdigest(),
        "utf-8",
        "text",
        7,
        path.stat().st_mtime_ns,
    )

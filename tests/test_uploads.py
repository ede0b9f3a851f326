"""rag.serve.uploads: uploads and deletes through the chat never write or remove anything they should not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag.errors import UploadRefused
from rag.serve.uploads import add_document, delete_document, list_documents, safe_name

EXTENSIONS = (".txt", ".md")
LIMIT = 1000
TEXT = b"The harbour master opens the gate at dawn.\n"


def listing(root: Path) -> dict[str, bytes | str]:
    """Every entry under `root` (hidden ones and links included) with its bytes or kind."""
    entries: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries[key] = f"link to {os.readlink(path)}"
            elif path.is_dir():
                entries[key] = "folder"
            else:
                entries[key] = path.read_bytes()
    return entries


@pytest.fixture
def place(tmp_path):
    """A corpus folder with one document, inside a parent that must stay untouched."""
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "kept.txt").write_bytes(TEXT)
    (corpus / "sub" / "inner.md").write_bytes(TEXT)
    (tmp_path / "outside.txt").write_bytes(b"Outside the corpus.\n")
    return tmp_path, corpus


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, cleaned",
    [
        ("notes.txt", "notes.txt"),
        ("Notes.MD", "Notes.MD"),
        ("my notes.txt", "my notes.txt"),
        ("  padded.txt  ", "padded.txt"),
        ("café-Übersicht.md", "café-Übersicht.md"),
        ("cafe\u0301.txt", "café.txt"),  # NFD from macOS becomes NFC
        ("отчёт.txt", "отчёт.txt"),
        ("报告.md", "报告.md"),
        ('it\'s "quoted".txt', "it_s _quoted_.txt"),
        ("a<b>|c*?.txt", "a_b_c_.txt"),
        ("nul\x00byte.txt", "nul_byte.txt"),
        ("bell\x07.txt", "bell_.txt"),
        ("rtl\u202eexe.txt", "rtl_exe.txt"),
        ("report.exe.txt", "report.exe.txt"),
        ("%2e%2e%2fescape.txt", "_2e_2e_2fescape.txt"),
    ],
)
def test_safe_name_keeps_plain_names_and_replaces_the_rest(name, cleaned):
    assert safe_name(name, EXTENSIONS) == cleaned


@pytest.mark.parametrize(
    "name, reason",
    [
        ("../escape.txt", "is a path"),
        ("../../etc/cron.d/job.txt", "is a path"),
        ("sub/notes.txt", "is a path"),
        ("..\\escape.txt", "is a path"),
        ("/etc/passwd.txt", "is a path"),
        ("/tmp/x.md", "is a path"),
        ("C:\\Windows\\x.txt", "is a path"),
        ("..", "is a path"),
        (".", "is a path"),
        (".hidden.txt", "hidden"),
        (".txt", "hidden"),
        ("...txt", "hidden"),
        ("  .bashrc.md", "hidden"),
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        ("report.pdf", "not an accepted type"),
        ("setup.exe", "not an accepted type"),
        ("page.html", "not an accepted type"),
        ("notes.txt.exe", "not an accepted type"),
        ("notes", "not an accepted type"),
        ("notes.txt\n.sh", "not an accepted type"),
        ("x" * 250 + ".txt", "too long"),
    ],
)
def test_safe_name_refuses_with_a_reason(name, reason):
    with pytest.raises(UploadRefused, match=reason):
        safe_name(name, EXTENSIONS)


# --- adding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("../escape.txt", TEXT, "is a path"),
        ("../../outside.txt", TEXT, "is a path"),
        ("/tmp/abs.txt", TEXT, "is a path"),
        ("sub/../../outside.txt", TEXT, "is a path"),
        (".hidden.txt", TEXT, "hidden"),
        ("report.pdf", b"%PDF-1.7\n", "not an accepted type"),
        ("setup.exe", b"MZ\x90\x00", "not an accepted type"),
        ("page.html", b"<html><script>alert(1)</script></html>", "not an accepted type"),
        ("big.txt", b"word " * (LIMIT // 5 + 1), "upload limit"),
        ("empty.txt", b"", "empty"),
        ("blank.md", b" \n\t\r\n ", "empty"),
        ("bom-only.txt", b"\xef\xbb\xbf\n", "empty"),
        ("binary.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00", "binary"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        ("garbage.txt", b"\x81\x8d\x8f\x90\x9d\x07", "UTF-8"),
    ],
)
def test_add_refuses_with_a_reason_and_writes_nothing(place, name, data, reason):
    root, corpus = place
    before = listing(root)
    with pytest.raises(UploadRefused, match=reason):
        add_document(corpus, name, data, EXTENSIONS, LIMIT)
    assert listing(root) == before


@pytest.mark.parametrize(
    "name, data, landed",
    [
        ("notes.txt", TEXT, "notes.txt"),
        ("my notes (v2).md", TEXT, "my notes _v2_.md"),
        ('it\'s "quoted".txt', TEXT, "it_s _quoted_.txt"),
        ("café.txt", "Le café ouvre à neuf heures.\n".encode(), "café.txt"),
        ("latin1.txt", "Le café ouvre à neuf heures.\n".encode("cp1252"), "latin1.txt"),
        ("utf16.txt", "Das Café öffnet um neun.\n".encode("utf-16"), "utf16.txt"),
        ("exact.txt", b"x" * LIMIT, "exact.txt"),
    ],
)
def test_a_normal_upload_lands_in_the_corpus_folder_with_a_safe_name(place, name, data, landed):
    root, corpus = place
    before = listing(root)
    path, replaced = add_document(corpus, name, data, EXTENSIONS, LIMIT)
    assert path == corpus / landed and not replaced
    assert path.read_bytes() == data
    after = listing(root)
    assert after == {**before, f"corpus/{landed}": data}  # that one file and nothing else
    assert landed in list_documents(corpus, EXTENSIONS)


def test_an_upload_replaces_a_document_of_the_same_name_says_so_and_keeps_the_earlier_one_first(place):
    root, corpus = place
    earlier = (corpus / "kept.txt").read_bytes()
    kept = []
    path, replaced = add_document(
        corpus,
        "kept.txt",
        b"New text of the kept document.\n",
        EXTENSIONS,
        LIMIT,
        keep=lambda p: kept.append(p.read_bytes()),
    )
    assert replaced and kept == [earlier]  # handed over before it was overwritten
    assert (corpus / "kept.txt").read_bytes() == b"New text of the kept document.\n"
    assert sorted(p.name for p in corpus.iterdir()) == ["kept.txt", "sub"]  # no temporary file left


def test_an_upload_lands_readable_like_any_other_file(place):
    _, corpus = place
    path, _ = add_document(corpus, "mode.txt", TEXT, EXTENSIONS, LIMIT)
    assert path.stat().st_mode & 0o044 == (corpus / "kept.txt").stat().st_mode & 0o044


def test_an_upload_never_writes_through_a_link_leading_outside(place):
    root, corpus = place
    os.symlink(root / "outside.txt", corpus / "linked.txt")
    before = listing(root)
    with pytest.raises(UploadRefused, match="link or a folder"):
        add_document(corpus, "linked.txt", TEXT, EXTENSIONS, LIMIT)
    assert listing(root) == before
    assert (root / "outside.txt").read_bytes() == b"Outside the corpus.\n"


def test_an_upload_over_a_folder_of_that_name_is_refused_not_a_crash(place):
    root, corpus = place
    (corpus / "folder.txt").mkdir()
    before = listing(root)
    with pytest.raises(UploadRefused, match="link or a folder"):
        add_document(corpus, "folder.txt", TEXT, EXTENSIONS, LIMIT)
    assert listing(root) == before


def test_a_failed_write_is_a_refusal_and_leaves_no_temporary_file(place, monkeypatch):
    root, corpus = place
    before = listing(root)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(UploadRefused, match="No space left"):
        add_document(corpus, "notes.txt", TEXT, EXTENSIONS, LIMIT)
    assert listing(root) == before


# --- deleting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, reason",
    [
        ("../outside.txt", "not a document in the corpus folder"),
        ("sub/../../outside.txt", "not a document in the corpus folder"),
        ("../corpus/kept.txt", "not a document in the corpus folder"),
        ("/etc/passwd", "not a document in the corpus folder"),
        ("", "not a document in the corpus folder"),
        (".", "not a .txt/.md document"),
        ("sub", "not a .txt/.md document"),
        ("kept.txt\x00.pdf", "not a document in the corpus folder"),
        ("missing.txt", "already deleted"),
        ("sub/missing.md", "already deleted"),
        ("notes.pdf", "not a .txt/.md document"),
        (".hidden.txt", "not a .txt/.md document"),
        (".git/config.txt", "not a .txt/.md document"),
    ],
)
def test_delete_refuses_with_a_reason_and_removes_nothing(place, source, reason):
    root, corpus = place
    (corpus / "notes.pdf").write_bytes(b"%PDF")
    (corpus / ".hidden.txt").write_bytes(TEXT)
    (corpus / ".git").mkdir()
    (corpus / ".git" / "config.txt").write_bytes(TEXT)
    before = listing(root)
    with pytest.raises(UploadRefused, match=reason):
        delete_document(corpus, source, EXTENSIONS)
    assert listing(root) == before


@pytest.mark.parametrize("source", ["kept.txt", "sub/inner.md"])
def test_delete_removes_exactly_that_document(place, source):
    root, corpus = place
    before = listing(root)
    delete_document(corpus, source, EXTENSIONS)
    after = listing(root)
    assert after == {k: v for k, v in before.items() if k != f"corpus/{source}"}


def test_delete_of_a_link_removes_the_link_never_its_target(place):
    root, corpus = place
    os.symlink("kept.txt", corpus / "alias.txt")
    os.symlink(root / "outside.txt", corpus / "outward.txt")
    delete_document(corpus, "alias.txt", EXTENSIONS)
    delete_document(corpus, "outward.txt", EXTENSIONS)
    assert (corpus / "kept.txt").read_bytes() == TEXT
    assert (root / "outside.txt").read_bytes() == b"Outside the corpus.\n"
    assert not (corpus / "alias.txt").is_symlink() and not (corpus / "outward.txt").is_symlink()


def test_delete_behind_a_linked_folder_is_refused(place):
    root, corpus = place
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "far.txt").write_bytes(TEXT)
    os.symlink(root / "elsewhere", corpus / "linked")
    before = listing(root)
    with pytest.raises(UploadRefused, match="linked folder"):
        delete_document(corpus, "linked/far.txt", EXTENSIONS)
    assert listing(root) == before


# --- listing ------------------------------------------------------------------------------


def test_list_shows_documents_only_and_never_a_name_a_browser_cannot_take(place):
    root, corpus = place
    (corpus / ".hidden.txt").write_bytes(TEXT)
    (corpus / "notes.pdf").write_bytes(b"%PDF")
    (corpus / "folder.txt").mkdir()
    (corpus / "café.md").write_bytes(TEXT)
    os.symlink("kept.txt", corpus / "alias.txt")
    os.symlink("nowhere.txt", corpus / "broken.txt")
    with open(os.path.join(os.fsencode(corpus), b"caf\xe9.txt"), "wb") as handle:
        handle.write(TEXT)
    documents = list_documents(corpus, EXTENSIONS)
    assert documents == ["alias.txt", "broken.txt", "café.md", "kept.txt", "sub/inner.md"]
    "\n".join(documents).encode("utf-8")  # every name can be sent as UTF-8
    for source in documents:
        delete_document(corpus, source, EXTENSIONS)  # and each listed one can be deleted
    assert list_documents(corpus, EXTENSIONS) == []

"""Hardening: bad questions, bad corpora, damaged indexes, and load, each through the real entry points."""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from conftest import DAMAGES, ROOT, copy_index, damage_version, newest_segment, start_server, topic_text, write_corpus
from fakes import FakeEmbedder

from rag.answer.quotes import NO_ANSWER, NOT_A_QUESTION, answer
from rag.build.indexer import build
from rag.cli import main as rag_main
from rag.index import segment, store
from rag.ingest.corpus import read_source
from rag.search import Retriever

# --- 1. bad questions ---------------------------------------------------------------------

NOT_A_QUESTION_INPUTS = {
    "empty": "",
    "whitespace only": " \t\n\r\u00a0\u2003 ",
    "punctuation only": "?!...,;:-()[]\"'",
    "unicode punctuation only": "¿¡«»—…“”",
    "NUL bytes only": "\x00\x00\x00",
    "control characters only": "\x01\x07\x1b\x7f\u200b",
    "emoji only": "🔥🚀😀🫖",
}
"""Input with no letters or digits: the reply asks for a question in words."""

TOO_LONG = {
    "100,000 characters": ("When did the Russian military operation in Syria start? " * 1800)[:100_000],
    "one 100,000-character word": "x" * 100_000,
    "one character over the limit": "When did it start? " + "x" * 1982,
}
"""Questions over RAG_MAX_QUESTION_CHARS (2,000): refused with a message that names the limit, not echoed whole."""

ANY_CLEAR_REPLY = {
    "2,000 characters": ("When did the Russian military operation in Syria start? " * 40)[:2000],
    "Russian": "Когда началась военная операция России в Сирии?",
    "Chinese": "俄罗斯在叙利亚的军事行动是什么时候开始的？",
    "Arabic": "متى بدأت العملية العسكرية الروسية في سوريا؟",
    "right-to-left marks and zero-width spaces": "\u202eWhen\u200b did the\u200d operation\u2066 start?",
    "markup": "<script>alert(1)</script> When did the operation start?",
}
"""Anything else: a verified cited answer or the plain "does not seem to answer" abstention."""

KNOWN_ANSWERS = {
    "control characters and NUL bytes": (
        "On\x00 what date did the\x1b Russian military\x07 operation in Syria\r\n begin?\x00",
        "September 30, 2015",
    ),
    "emoji around words": ("🫖 How often should I descale the kettle? 🙂", "every four weeks"),
    "tabs and runs of spaces": ("How\toften   should I\u00a0descale the kettle?", "every four weeks"),
}
"""Noise around a real question must not stop it being answered."""


def assert_clear_reply(reply: dict, corpus: Path) -> None:
    """A cited answer whose every quote stands in its file, or the plain abstention: nothing else."""
    assert isinstance(reply["answer"], str) and "Traceback" not in reply["answer"]
    if reply["abstained"]:
        assert reply["answer"] == NOT_A_QUESTION or reply["answer"].startswith(NO_ANSWER), reply["answer"][:200]
        assert reply["citations"] == []
        return
    assert reply["citations"]
    for citation in reply["citations"]:
        text = read_source(corpus, citation["source"])
        assert text is not None and text[citation["start"] : citation["end"]] == citation["quote"]
        assert f"[{citation['n']}]" in reply["answer"]


@pytest.fixture(scope="module")
def seed_retriever(seed_settings):
    return Retriever(seed_settings)


@pytest.mark.parametrize("question", NOT_A_QUESTION_INPUTS.values(), ids=NOT_A_QUESTION_INPUTS.keys())
def test_library_asks_for_words_when_there_are_none(seed_settings, seed_retriever, question):
    result = answer(question, seed_retriever, seed_settings)
    assert (result.text, result.abstained, result.citations) == (NOT_A_QUESTION, True, ())


@pytest.mark.parametrize("question", ANY_CLEAR_REPLY.values(), ids=ANY_CLEAR_REPLY.keys())
def test_library_gives_a_clear_reply_to_odd_questions(seed_settings, seed_retriever, question):
    started = time.perf_counter()
    result = answer(question, seed_retriever, seed_settings)
    assert time.perf_counter() - started < 60  # a hang guard; bench/ measures speed
    assert len(result.searched_for) <= seed_settings.max_question_chars
    assert_clear_reply(result.to_dict(), seed_settings.corpus)


def assert_refused_as_too_long(reply: dict, question: str) -> None:
    assert reply["abstained"] and reply["citations"] == [] and reply["nearest"] == []
    assert f"{len(question):,} characters long" in reply["answer"] and "at most 2,000 characters" in reply["answer"]
    assert "RAG_MAX_QUESTION_CHARS" in reply["answer"]
    assert len(reply["question"]) <= 201  # never echoed whole


@pytest.mark.parametrize("question", TOO_LONG.values(), ids=TOO_LONG.keys())
def test_library_refuses_a_question_over_the_limit_naming_it(seed_settings, seed_retriever, question):
    assert_refused_as_too_long(answer(question, seed_retriever, seed_settings).to_dict(), question)


@pytest.mark.parametrize("question, expected", KNOWN_ANSWERS.values(), ids=KNOWN_ANSWERS.keys())
def test_library_answers_a_real_question_inside_noise(seed_settings, seed_retriever, question, expected):
    result = answer(question, seed_retriever, seed_settings).to_dict()
    assert_clear_reply(result, seed_settings.corpus)
    assert not result["abstained"] and any(expected in c["quote"] for c in result["citations"])


def test_library_survives_a_lone_surrogate(seed_settings, seed_retriever):
    result = answer("\ud800 When did the operation start? \udfff", seed_retriever, seed_settings)
    assert_clear_reply(result.to_dict(), seed_settings.corpus)
    assert "\ud800" not in result.searched_for


@pytest.mark.parametrize("question", [None, 42, b"bytes?"], ids=["None", "a number", "bytes"])
def test_library_takes_non_text_input_without_a_traceback(seed_settings, seed_retriever, question):
    assert_clear_reply(answer(question, seed_retriever, seed_settings).to_dict(), seed_settings.corpus)


# --- 2. a bad corpus never stops a build, and every skip is named ------------------------

GOOD = {"harbour.txt": topic_text("harbour"), "glacier.md": topic_text("glacier")}


def make_binary(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))


def make_latin1_noise(path: Path) -> None:
    path.write_bytes("Caf\xe9 cr\xe8me.".encode("latin-1") + b"\x07\x1b[0m")


def make_utf16_without_bom(path: Path) -> None:
    path.write_bytes("The orchard report without a byte-order mark.".encode("utf-16-le"))


def make_bad_utf16(path: Path) -> None:
    path.write_bytes(b"\xff\xfe" + "Half a character".encode("utf-16-le") + b"\x00")


def make_empty(path: Path) -> None:
    path.write_bytes(b"")


def make_blank(path: Path) -> None:
    path.write_bytes(b"\xef\xbb\xbf \n\t\r\n  ")


def make_huge(path: Path) -> None:
    with open(path, "wb") as handle:  # sparse: no 100 MB is written, and none may be read
        handle.truncate(100 * 1024 * 1024)


def make_link_outside(path: Path) -> None:
    outside = path.parent.parent / "outside-secret.txt"
    outside.write_text("The outside secret code is swordfish.", encoding="utf-8")
    os.symlink(outside, path)


def make_link_loop(path: Path) -> None:
    os.symlink(path.name, path)


def make_link_pair_loop(path: Path) -> None:
    os.symlink("pair-b.txt", path)
    os.symlink(path.name, path.parent / "pair-b.txt")


def make_broken_link(path: Path) -> None:
    os.symlink("nowhere.txt", path)


def make_link_to_device(path: Path) -> None:
    os.symlink("/dev/zero", path)


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


BAD_FILES = {
    # name: (maker, words the skip reason must hold)
    "binary.txt": (make_binary, "binary"),
    "noise.txt": (make_latin1_noise, "UTF-8"),
    "utf16-no-bom.txt": (make_utf16_without_bom, "binary"),
    "bad-utf16.md": (make_bad_utf16, "UTF-16"),
    "empty.txt": (make_empty, "empty"),
    "blank.md": (make_blank, "empty"),
    "huge.txt": (make_huge, "104,857,600 bytes is over the 20,000,000-byte limit"),
    "outside.txt": (make_link_outside, "outside the corpus folder; not followed"),
    "loop.txt": (make_link_loop, "loops"),
    "pair-a.txt": (make_link_pair_loop, "loops"),
    "broken.txt": (make_broken_link, "broken symbolic link"),
    "zero.txt": (make_link_to_device, "outside the corpus folder"),
    "pipe.txt": (make_fifo, "not a regular file"),
}


@pytest.fixture
def opened(monkeypatch):
    """Names of the files opened for reading from now on (Path.read_bytes goes through Path.open)."""
    names: list[str] = []
    real_open = Path.open

    def recording_open(self, *args, **kwargs):
        names.append(self.name)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", recording_open)
    return names


def build_within(settings, seconds: float = 30.0):
    """Build with the fake embedder in a thread; fail (and unblock any pipe) if it hangs."""
    outcome: dict = {}

    def run():
        try:
            outcome["summary"] = build(settings, embedder_factory=lambda name: FakeEmbedder())
        except BaseException as error:  # noqa: BLE001 - reported below
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for pipe in Path(settings.corpus).rglob("*"):
            if pipe.is_fifo():
                os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))  # let a blocked reader go
        thread.join(10)
        pytest.fail(f"the build hung for {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["summary"]


@pytest.mark.parametrize("name", BAD_FILES, ids=BAD_FILES)
def test_a_bad_file_is_skipped_by_name_and_the_build_goes_on(make_settings, opened, caplog, name):
    settings = make_settings()
    write_corpus(settings.corpus, GOOD)
    maker, reason = BAD_FILES[name]
    maker(settings.corpus / name)
    with caplog.at_level(logging.WARNING, logger="rag.ingest.corpus"):
        summary = build_within(settings)
    assert name in summary.skipped and reason in summary.skipped[name]
    assert f"skipped {name}: " in caplog.text
    loaded = store.load(settings.index)
    assert sorted(loaded.manifest.files) == sorted(GOOD)
    assert all("swordfish" not in p.text for p in loaded.passages)
    if name == "huge.txt":
        assert "huge.txt" not in opened  # refused by its size, never read


def test_a_corpus_of_every_bad_file_at_once_still_builds(make_settings):
    settings = make_settings()
    write_corpus(settings.corpus, GOOD)
    for name, (maker, _) in BAD_FILES.items():
        if not (settings.corpus / name).is_symlink():
            maker(settings.corpus / name)
    summary = build_within(settings)
    assert set(BAD_FILES) <= set(summary.skipped)
    assert summary.files_added == len(GOOD) and summary.files_skipped == len(summary.skipped)
    assert f"{len(summary.skipped)} skipped" in summary.line()
    assert store.load(settings.index).manifest.skipped == summary.skipped


@pytest.mark.parametrize(
    "name, data, encoding",
    [
        ("latin1.txt", "Le café crème coûte deux euros à Genève.\n".encode("latin-1"), "cp1252"),
        ("cp1252.txt", "Das „Café“ – sagt er – öffnet um neun…\n".encode("cp1252"), "cp1252"),
        ("utf16le.txt", "Das Café öffnet um neun Uhr morgens.\r\n".encode("utf-16"), "utf-16"),
        ("utf16be.txt", b"\xfe\xff" + "Das Café öffnet um neun Uhr morgens.\n".encode("utf-16-be"), "utf-16"),
    ],
)
def test_latin1_and_utf16_are_decoded_and_their_quotes_check(make_settings, name, data, encoding):
    settings = make_settings()
    (settings.corpus / name).write_bytes(data)
    fake = FakeEmbedder()
    summary = build(settings, embedder_factory=lambda n: fake)
    assert summary.skipped == {}
    assert store.load(settings.index).manifest.files[name].encoding == encoding
    retriever = Retriever(settings, embedder_factory=lambda n: fake)
    question = "When does the café open?" if "öffnet" in data.decode(encoding) else "What does the café crème cost?"
    result = answer(question, retriever, settings.replace(min_score=0.0))
    assert not result.abstained and result.citations[0].source == name
    assert_clear_reply(result.to_dict(), settings.corpus)


def test_an_unreadable_file_is_skipped_by_name(make_settings, monkeypatch):
    settings = make_settings()
    write_corpus(settings.corpus, {**GOOD, "locked.txt": "Secret minutes of the locked meeting."})
    real_open = Path.open

    def refusing_open(self, *args, **kwargs):  # root reads anything, so chmod cannot show this
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing_open)
    summary = build_within(settings)
    assert "Permission denied" in summary.skipped["locked.txt"]
    assert sorted(store.load(settings.index).manifest.files) == sorted(GOOD)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_by_mode_is_skipped_by_name(make_settings):
    settings = make_settings()
    write_corpus(settings.corpus, {**GOOD, "locked.txt": "Secret minutes."})
    (settings.corpus / "locked.txt").chmod(0)
    try:
        summary = build_within(settings)
    finally:
        (settings.corpus / "locked.txt").chmod(0o644)
    assert "Permission denied" in summary.skipped["locked.txt"]


def test_an_unreadable_folder_is_skipped_by_name(make_settings, monkeypatch):
    settings = make_settings()
    write_corpus(settings.corpus, {**GOOD, "private/minutes.txt": "Private minutes."})
    real_scandir = os.scandir

    def refusing_scandir(path="."):
        if Path(path).name == "private":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing_scandir)
    summary = build_within(settings)
    assert "Permission denied" in summary.skipped["private"]
    assert sorted(store.load(settings.index).manifest.files) == sorted(GOOD)


def test_a_folder_linked_from_outside_is_not_entered_and_is_named(make_settings, tmp_path, caplog):
    settings = make_settings()
    write_corpus(settings.corpus, GOOD)
    write_corpus(tmp_path / "elsewhere", {"secret.txt": "The outside secret code is swordfish."})
    os.symlink(tmp_path / "elsewhere", settings.corpus / "linked")
    with caplog.at_level(logging.WARNING, logger="rag.ingest.corpus"):
        build_within(settings)
    assert "linked" in caplog.text and "not entered" in caplog.text
    loaded = store.load(settings.index)
    assert sorted(loaded.manifest.files) == sorted(GOOD)
    assert all("swordfish" not in p.text for p in loaded.passages)


def test_a_file_name_that_is_not_utf8_is_skipped_by_name_and_the_index_stays_valid(make_settings):
    settings = make_settings()
    write_corpus(settings.corpus, GOOD)
    with open(os.path.join(os.fsencode(settings.corpus), b"caf\xe9-menu.txt"), "wb") as handle:
        handle.write(b"The cafe menu lists three soups.")
    summary = build_within(settings)
    assert "not valid UTF-8" in summary.skipped["caf\\xe9-menu.txt"]
    json.dumps(summary.to_dict())  # printable everywhere: no lone surrogates
    assert sorted(store.load(settings.index).manifest.files) == sorted(GOOD)


ODD_NAMES = {
    "my notes.txt": "The zeppelin hangar stands on the northern meadow.",
    'it\'s "quoted".md': "The lighthouse keeper winds the clock every evening.",
    "café naïve Ünïcode.txt": "The bakery sells rye loaves on Saturdays.",
    "отчёт 2024.txt": "The glacier retreated forty metres last summer.",
    "报告.md": "The orchard harvest began in early September.",
    "hash#tag & more.txt": "The volcano observatory records tremors hourly.",
    "folder with space/inner 'file'.txt": "The library closes at nine on Fridays.",
    "-dash leading.txt": "The meadow is mowed twice each year.",
    "deep": "The abyssal trench is the deepest point of the survey.",
}
DEEP = "/".join(f"level{n}" for n in range(60)) + "/bottom.txt"


@pytest.fixture(scope="module")
def odd_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd")
    from rag.config import Settings

    settings = Settings(corpus=root / "corpus", index=root / "index", model="fake-model")
    write_corpus(settings.corpus, {(DEEP if name == "deep" else name): text for name, text in ODD_NAMES.items()})
    fake = FakeEmbedder()
    summary = build(settings, embedder_factory=lambda n: fake)
    return settings, Retriever(settings, embedder_factory=lambda n: fake), summary


@pytest.mark.parametrize("name", ODD_NAMES, ids=list(ODD_NAMES))
def test_odd_file_names_and_deep_folders_are_indexed_cited_and_checked(odd_corpus, name):
    settings, retriever, summary = odd_corpus
    source = DEEP if name == "deep" else name
    assert summary.skipped == {} and summary.files_added == len(ODD_NAMES)
    result = answer(ODD_NAMES[name].rstrip(".") + "?", retriever, settings)
    assert not result.abstained
    citation = result.citations[0]
    assert citation.source == source and citation.passage_id == f"{source}#1"
    on_disk = Path(settings.corpus, citation.source).read_text(encoding="utf-8")
    assert on_disk[citation.start : citation.end] == citation.quote == ODD_NAMES[name]


# --- 3. a damaged index -------------------------------------------------------------------

POINTER_DAMAGES = ["garbage pointer", "pointer to a missing version", "pointer with a path"]
MORE_DAMAGES = [
    "BM25 files missing",
    "empty FAISS file",
    "manifest of the wrong shape",
    "passages of the wrong shape",
    "segment missing",
    "segment description damaged",
    "text keys missing",
]


def damage(index: Path, what: str) -> None:
    """Break the live index in one of the ways a disk, an editor or a person can."""
    version = store.current_version(index) if what not in POINTER_DAMAGES else None
    if what in DAMAGES:
        damage_version(version, what)
    elif what == "garbage pointer":
        (index / store.POINTER).write_bytes(b"\xff\xfe\x00\x9c not a version name")
    elif what == "pointer to a missing version":
        (index / store.POINTER).write_text("v-20990101T000000-000000000-gone\n", encoding="utf-8")
    elif what == "pointer with a path":
        (index / store.POINTER).write_text("../../etc\n", encoding="utf-8")
    elif what == "BM25 files missing":
        shutil.rmtree(newest_segment(version) / segment.TERMS)
    elif what == "empty FAISS file":
        (newest_segment(version) / segment.FAISS).write_bytes(b"")
    elif what == "manifest of the wrong shape":
        (version / store.MANIFEST).write_text('{"files": ["a.txt"], "model": 3}', encoding="utf-8")
    elif what == "passages of the wrong shape":
        (newest_segment(version) / segment.PASSAGES).write_text('null\n["a"]\n', encoding="utf-8")
    elif what == "segment missing":
        shutil.rmtree(newest_segment(version))
    elif what == "segment description damaged":
        (newest_segment(version) / segment.INFO).write_text('{"name": 3}', encoding="utf-8")
    elif what == "text keys missing":
        (newest_segment(version) / segment.KEYS).unlink()
    else:
        raise ValueError(what)


EVERY_DAMAGE = DAMAGES + POINTER_DAMAGES + MORE_DAMAGES


@pytest.fixture
def damaged(make_settings, request):
    settings = make_settings()
    write_corpus(settings.corpus, GOOD)
    build(settings, embedder_factory=lambda name: FakeEmbedder())
    damage(settings.index, request.param)
    return settings


def cli_flags(settings) -> list[str]:
    return ["--corpus", str(settings.corpus), "--index", str(settings.index), "--model", settings.model]


@pytest.mark.parametrize("damaged", EVERY_DAMAGE, indirect=True)
def test_rag_ask_on_a_damaged_index_is_a_clean_error_naming_the_fix(damaged, capsys):
    assert rag_main(["ask", "What does the harbour report describe?", *cli_flags(damaged)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("rag: error: ") and "rag build --full" in err


@pytest.mark.parametrize("damaged", EVERY_DAMAGE, indirect=True)
def test_rag_status_on_a_damaged_index_says_damaged_and_names_the_fix(damaged, capsys):
    rag_main(["status", *cli_flags(damaged)])
    out, err = capsys.readouterr()
    assert "state: damaged" in out and "rag build --full" in out


@pytest.mark.parametrize("damaged", EVERY_DAMAGE, indirect=True)
def test_rag_build_full_repairs_anydamage_version(damaged):
    summary = build(damaged, full=True, embedder_factory=lambda name: FakeEmbedder())
    assert summary.full and summary.files_added == len(GOOD)
    assert len(store.load(damaged.index).passages) == summary.passages


@pytest.mark.parametrize("damaged", ["truncated faiss", "garbage pointer"], indirect=True)
def test_the_real_command_prints_no_traceback_on_a_damaged_index(damaged):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for command in (["ask", "What does the harbour report describe?"], ["status"]):
        done = subprocess.run(
            [sys.executable, "-m", "rag", *command, *cli_flags(damaged)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert "Traceback" not in done.stderr + done.stdout
        assert "rag build --full" in done.stderr + done.stdout


# --- 1 and 3 through a running server -----------------------------------------------------

SEED_QUESTION = "In how many countries will the terrorists now solve their problems?"
SERVER_DAMAGES = ["truncated faiss", "edited manifest", "passages out of step", "missing passages", "garbage pointer"]


def ask_raw(url: str, question: str) -> dict:
    """`/ask` over plain HTTP, for input gradio_client cannot send (a lone surrogate travels JSON-escaped)."""
    from rag.serve.client import ask_server

    return ask_server(url, question, timeout=120)


@pytest.fixture(scope="class")
def server(seed_settings, tmp_path_factory):
    """A real `rag serve` over a copy of the seed index, stopped when its class of tests ends."""
    root = tmp_path_factory.mktemp("hardened")
    settings = copy_index(seed_settings, root)
    process, url = start_server(settings)
    from gradio_client import Client

    yield settings, url, Client(url, verbose=False)
    process.terminate()
    process.wait(timeout=30)


class TestRunningServer:
    """Bad questions and damaged versions through one real server's HTTP API (`/ask`)."""

    @pytest.mark.parametrize("question", NOT_A_QUESTION_INPUTS.values(), ids=NOT_A_QUESTION_INPUTS.keys())
    def test_api_asks_for_words_when_there_are_none(self, server, question):
        settings, url, client = server
        reply = client.predict(question, api_name="/ask")
        assert (reply["answer"], reply["abstained"], reply["citations"]) == (NOT_A_QUESTION, True, [])

    @pytest.mark.parametrize("question", ANY_CLEAR_REPLY.values(), ids=ANY_CLEAR_REPLY.keys())
    def test_api_gives_a_clear_reply_to_odd_questions(self, server, question):
        settings, url, client = server
        started = time.perf_counter()
        reply = client.predict(question, api_name="/ask")
        assert time.perf_counter() - started < 60  # a hang guard; bench/ measures speed
        assert len(reply["searched_for"]) <= settings.max_question_chars
        assert_clear_reply(reply, settings.corpus)

    @pytest.mark.parametrize("question", TOO_LONG.values(), ids=TOO_LONG.keys())
    def test_api_refuses_a_question_over_the_limit_naming_it(self, server, question):
        settings, url, client = server
        assert_refused_as_too_long(client.predict(question, api_name="/ask"), question)

    def test_a_body_over_the_request_limit_is_refused_before_it_is_read(self, server):
        settings, url, client = server
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        connection.putrequest("POST", "/gradio_api/call/ask")  # a 20 MB question, announced: the answer comes first
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(20_000_000))
        connection.endheaders()
        refused = connection.getresponse()
        assert refused.status == 413
        assert "RAG_MAX_REQUEST_BYTES" in json.loads(refused.read())["error"]
        connection.close()
        assert client.predict("How often should I descale the kettle?", api_name="/ask")["citations"]  # still serving

    @pytest.mark.parametrize("question, expected", KNOWN_ANSWERS.values(), ids=KNOWN_ANSWERS.keys())
    def test_api_answers_a_real_question_inside_noise(self, server, question, expected):
        settings, url, client = server
        reply = client.predict(question, api_name="/ask")
        assert_clear_reply(reply, settings.corpus)
        assert not reply["abstained"] and any(expected in c["quote"] for c in reply["citations"])

    def test_api_survives_a_lone_surrogate(self, server):
        settings, url, client = server
        assert_clear_reply(ask_raw(url, "\ud800 When did the operation start?"), settings.corpus)

    @pytest.mark.parametrize("what", SERVER_DAMAGES)
    def test_a_damaged_new_version_leaves_the_server_answering_from_the_previous_one(self, server, what):
        settings, url, client = server
        island = f"Island{SERVER_DAMAGES.index(what)}"
        write_corpus(settings.corpus, {f"{island}.txt": f"The lighthouse on {island} is painted bright red and white."})
        build(settings)
        damage(settings.index, what)
        reply = client.predict(SEED_QUESTION, api_name="/ask")
        assert not reply["abstained"] and "about 60 countries" in reply["citations"][0]["quote"]
        assert_clear_reply(reply, settings.corpus)
        new = client.predict(f"What colour is the lighthouse on {island}?", api_name="/ask")
        assert all(c["source"] != f"{island}.txt" for c in new["citations"])  # the damaged version is not served

    def test_then_a_good_build_is_served_again(self, server):
        settings, url, client = server
        summary = build(settings)
        assert summary.full  # the live version was damaged, so it was not extended
        reply = client.predict("What colour is the lighthouse on Island0?", api_name="/ask")
        assert not reply["abstained"] and reply["citations"][0]["source"] == "Island0.txt"


# --- 6. load ------------------------------------------------------------------------------


def test_load_small(seed_settings):
    """bench/load.py, reduced: 8 clients × 3 questions through the API with a rebuild half-way."""
    before = {p: p.read_bytes() for p in seed_settings.corpus.rglob("*") if p.is_file()}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "load.py"),
            "--corpus",
            str(seed_settings.corpus),
            "--index",
            str(seed_settings.index),
            "--clients",
            "8",
            "--questions",
            "3",
            "--rebuild-during",
            "--time-limit",
            "300",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["failures"] == [] and (figures["answered"], figures["failed"]) == (24, 0)
    assert figures["build_exit"] == 0 and figures["new_index_served"] is True
    assert figures["answered_during_build"] > 0
    assert done.returncode == 0
    after = {p: p.read_bytes() for p in seed_settings.corpus.rglob("*") if p.is_file()}
    assert after == before  # it edited a copy, never the corpus it was given

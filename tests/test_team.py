"""A shared server with two collections and users who may read one each: nothing of the other collection ever
reaches a user, through the API, the page, or a refusal; editors change only their own collections."""

from __future__ import annotations

import json
import re

import pytest
from conftest import CHROMIUM, CHROMIUM_FLAGS, start_server, write_corpus

from rag.build.indexer import build
from rag.config import Settings
from rag.serve import accounts

ALPHA = {
    "ledger/harbour.txt": "The harbour crane in Alpha port lifts forty tonnes. It was painted orange in 2019.\n",
    "ledger/notes.md": "# Alpha notes\n\nThe Alpha ferry leaves at seven every morning from pier three.\n",
}
BRAVO = {
    "secrets/payroll-bravo.txt": "Bravo payroll: the chief engineer Quentin Marlowe earns ninety thousand a year.\n",
    "secrets/merger-plan.md": "# Project Heron\n\nBravo will acquire the Dunmore glassworks in March for twelve million.\n",
}
BRAVO_QUESTIONS = [
    "How much does the chief engineer earn?",
    "Which company will Bravo acquire in March?",
]
PASSWORD = "long enough password"


def leaks(body: str) -> list[str]:
    """Bravo's file names and 20-character runs of Bravo's text found in `body`."""
    found = [name for name in BRAVO if name in body or name.rsplit("/", 1)[-1] in body]
    for text in BRAVO.values():
        words = re.sub(r"\s+", " ", text).strip()
        found += [words[i : i + 20] for i in range(0, len(words) - 20, 5) if words[i : i + 20] in body]
    return found


@pytest.fixture(scope="module")
def team(tmp_path_factory, real_embedder):
    """`rag serve --collection alpha=… --collection bravo=…` with ann (reads alpha), bob (reads bravo) and
    ed (edits alpha)."""
    root = tmp_path_factory.mktemp("team")
    folders = {"alpha": root / "alpha", "bravo": root / "bravo"}
    for name, files in (("alpha", ALPHA), ("bravo", BRAVO)):
        folders[name].mkdir()
        write_corpus(folders[name], files)
        build(Settings(corpus=folders[name], index=root / "index" / name), embedder_factory=lambda n: real_embedder)
    path = root / "index" / accounts.FILE
    accounts.add_user(path, "ann", "reader", ["alpha"], [], PASSWORD)
    accounts.add_user(path, "bob", "reader", ["bravo"], [], PASSWORD)
    accounts.add_user(path, "ed", "editor", ["alpha"], [], PASSWORD)
    settings = Settings(corpus=root / "unused", index=root / "index")
    process, url = start_server(
        settings, "--collection", f"alpha={folders['alpha']}", "--collection", f"bravo={folders['bravo']}"
    )
    yield settings, url, folders
    process.terminate()
    process.wait(timeout=30)


def client_of(url: str, user: str):
    from gradio_client import Client

    return Client(url, auth=(user, PASSWORD), verbose=False)


@pytest.mark.parametrize("question", BRAVO_QUESTIONS)
def test_a_user_never_receives_anything_of_a_collection_they_may_not_read(team, question):
    settings, url, folders = team
    ann = client_of(url, "ann")
    reply = ann.predict(question, api_name="/ask")
    assert reply["abstained"] and reply["citations"] == []
    assert all(not hit["source"].startswith("secrets/") for hit in reply["nearest"])
    assert not leaks(json.dumps(reply)), leaks(json.dumps(reply))
    bob = client_of(url, "bob").predict(question, api_name="/ask")  # the collection does answer its own reader
    assert not bob["abstained"] and bob["citations"][0]["collection"] == "bravo"
    assert (folders["bravo"] / bob["citations"][0]["source"]).read_text()[
        bob["citations"][0]["start"] : bob["citations"][0]["end"]
    ] == bob["citations"][0]["quote"]


def test_asking_for_a_forbidden_collection_reads_as_asking_for_one_that_does_not_exist(team):
    settings, url, folders = team
    ann = client_of(url, "ann")
    forbidden = ann.predict(BRAVO_QUESTIONS[0], "bravo", "", api_name="/ask")
    missing = ann.predict(BRAVO_QUESTIONS[0], "zeta", "", api_name="/ask")
    assert forbidden["answer"] == missing["answer"] and forbidden["citations"] == missing["citations"] == []
    assert not leaks(json.dumps(forbidden))


def test_every_response_the_api_gives_a_user_is_free_of_the_other_collection(team):
    import httpx

    settings, url, folders = team
    with httpx.Client(base_url=url, timeout=60) as session:
        assert session.post("login", data={"username": "ann", "password": PASSWORD}).status_code == 200
        bodies = [session.get(path).text for path in ("", "config", "gradio_api/info", "login")]
    assert not leaks("\n".join(bodies)), leaks("\n".join(bodies))


def test_a_question_may_be_narrowed_to_folders_and_the_audit_log_records_it(team):
    settings, url, folders = team
    ed = client_of(url, "ed")
    narrowed = ed.predict("When does the ferry leave?", "", "ledger/notes.md", api_name="/ask")
    assert narrowed["citations"] and {c["source"] for c in narrowed["citations"]} == {"ledger/notes.md"}
    elsewhere = ed.predict("When does the ferry leave?", "", "ledger/harbour.txt", api_name="/ask")
    assert all(c["source"] == "ledger/harbour.txt" for c in elsewhere["citations"])
    events = [json.loads(line) for line in (settings.index / "audit.jsonl").read_text().splitlines()]
    asked = [e for e in events if e["event"] == "question" and e["user"] == "ed"]
    assert asked and asked[-1]["collections"] == ["alpha"] and asked[-1]["question"] == "When does the ferry leave?"
    assert any(e["event"] == "login" and e["user"] == "ann" for e in events)


def test_in_the_browser_a_user_sees_their_collection_alone(team):
    from playwright.sync_api import sync_playwright

    settings, url, folders = team
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = chromium.new_page()
        received: list[str] = []

        def keep(response):
            try:
                received.append(response.text())
            except Exception:  # noqa: BLE001  bodies of redirects and streams cannot be read: nothing to search
                pass

        page.on("response", keep)
        page.goto(url)
        page.fill("input[name=username]", "ed")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#rag-question textarea")
        page.wait_for_function("() => document.querySelector('#rag-status').innerText.includes('alpha')")
        status = page.inner_text("#rag-status")
        assert "alpha: 2 files" in status and "bravo" not in status
        page.click("text=Documents and index")
        page.click("#rag-doc input")
        page.wait_for_selector("#rag-doc [role=option]")
        options = [o.get_attribute("aria-label") for o in page.query_selector_all("#rag-doc [role=option]")]
        assert sorted(options) == ["alpha: ledger/harbour.txt", "alpha: ledger/notes.md"]  # an editor of alpha alone
        for question in BRAVO_QUESTIONS:
            page.fill("#rag-question textarea", question)
            page.click("#rag-ask")
            page.wait_for_function(
                "q => document.querySelector('#rag-chat').innerText.split(q).length > 1 "
                "&& document.querySelector('#rag-chat').innerText.includes('does not seem to answer')",
                arg=question,
                timeout=60_000,
            )
        page.wait_for_timeout(500)
        everything = "\n".join(received) + page.content()
        chromium.close()
    assert not leaks(everything), leaks(everything)

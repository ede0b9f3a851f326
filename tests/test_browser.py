"""The chat page in a real headless Chromium: ask, see the quote and citation, open it, stay safe."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
import writers
from conftest import CHROMIUM, CHROMIUM_FLAGS, copy_index, start_server, write_corpus
from test_readers import LEFT_1, LEFT_2, PAGE_2_LEFT, PAGE_2_RIGHT, RIGHT_1

from rag.build.indexer import build

HOSTILE = (
    "Evil markup notes.\n\n"
    "The hostile widget manual says <script>window.__pwned = 1</script> is printed on the box. "
    'The hostile widget also shows <img src=x onerror="window.__pwned = 2"> on its label. '
    "Read the hostile widget [safety guide](javascript:window.__pwned=3) before use. "
    "The hostile widget costs &lt;b&gt;5&lt;/b&gt; &amp; ships fast.\n"
)


LONG_NAME = "reports/" + "quarterly_operations_review_of_the_northern_regional_distribution_centre_" * 2 + "final.txt"
LONG_NAMED = "The northern distribution centre shipped forty thousand parcels in the third quarter.\n"


@pytest.fixture(scope="module")
def page_url(seed_settings, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is not installed; run `make test` (it installs it) or `scripts/install-test-tools`"
        )
    root = tmp_path_factory.mktemp("browser")
    settings = copy_index(seed_settings, root)
    write_corpus(settings.corpus, {"hostile.md": HOSTILE, LONG_NAME: LONG_NAMED})
    writers.two_column_pdf(
        settings.corpus / "kettles.pdf", [(LEFT_1 + [""] + LEFT_2, RIGHT_1), (PAGE_2_LEFT, PAGE_2_RIGHT)]
    )
    build(settings)
    process, url = start_server(settings)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


REQUESTED_HOSTS: set[str] = set()
"""Every host a chat page asked for anything (a font, a script, an API call): loopback alone, checked at the end."""


def open_chat(browser, url: str, documents: bool = False):
    """A new page on the chat, ready for a question; `documents` opens the documents panel too."""
    page = browser.new_page()
    page.on("request", lambda request: REQUESTED_HOSTS.add(urllib.parse.urlsplit(request.url).hostname or ""))
    page.goto(url)
    page.wait_for_selector("#rag-question textarea")
    if documents:
        page.click("text=Documents and index")
    return page


def ask(page, question: str) -> None:
    page.fill("#rag-question textarea", question)
    page.click("#rag-ask")
    page.wait_for_function(
        "q => document.querySelector('#rag-chat') && document.querySelector('#rag-chat').innerText.split(q).length > 1 "
        "&& document.querySelectorAll('#rag-chat .message-row, #rag-chat [data-testid=bot]').length >= 2",
        arg=question,
        timeout=60_000,
    )
    page.wait_for_function("() => document.querySelector('#rag-sources details')", timeout=60_000)


def test_ask_see_quote_and_citation_then_open_the_highlighted_passage(browser, page_url):
    page = open_chat(browser, page_url)
    page.wait_for_function("() => document.querySelector('#rag-status').innerText.includes('passages')")  # on load
    ask(page, "In how many countries will the terrorists now solve their problems?")
    chat = page.inner_text("#rag-chat")
    assert "about 60 countries" in chat and "[1]" in chat and "000_46ad57352320fbef.txt, line 15" in chat
    page.click("#rag-sources details[data-n='1'] summary")
    mark = page.locator("#rag-sources details[data-n='1'] mark")
    assert mark.is_visible()
    assert "about 60 countries" in mark.inner_text()
    # the answer is bold inside the quote, in the sources panel and in the chat: the number asked for
    # ("60" as the reader marks it, "about 60 countries" as the span model did), never text outside it
    bold = mark.locator("strong").inner_text()
    assert "60" in bold and bold in "about 60 countries"
    assert page.locator("#rag-chat strong").first.inner_text() == bold
    page.close()


def test_document_markup_renders_as_text_and_never_runs(browser, page_url):
    page = open_chat(browser, page_url)
    ask(page, "What does the hostile widget manual print on the box?")
    for details in page.locator("#rag-sources details").all():
        details.locator("summary").click()
    sources = page.inner_text("#rag-sources")
    assert "<script>window.__pwned = 1</script>" in sources
    chat = page.inner_text("#rag-chat")
    assert "<script>window.__pwned = 1</script>" in chat  # shown as text, not dropped, not double-escaped
    assert "<img src=x onerror=" in sources  # the neighbouring sentence, shown as context
    # a quote is one sentence: ask for the one with the image tag too
    page.fill("#rag-question textarea", "What does the hostile widget show on its label?")
    page.click("#rag-ask")
    page.wait_for_function(
        "() => document.querySelector('#rag-chat').innerText.includes('onerror=\"window.__pwned = 2\">')",
        timeout=60_000,
    )
    chat = page.inner_text("#rag-chat")
    assert '<img src=x onerror="window.__pwned = 2">' in chat
    assert "&lt;b&gt;5&lt;/b&gt; &amp;" in sources
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("#rag-sources script, #rag-sources img, #rag-chat script, #rag-chat img[src='x']").count() == 0
    assert page.locator("a[href^='javascript:']").count() == 0
    page.close()


def test_upload_rebuild_ask_then_delete_from_the_page(browser, page_url, tmp_path):
    page = open_chat(browser, page_url, documents=True)
    upload = tmp_path / "otters.md"
    upload.write_text("Sea otters hold hands while they sleep so that they do not drift apart.\n", encoding="utf-8")
    page.set_input_files("#rag-upload input[type=file]", str(upload))
    page.wait_for_function(
        "() => (document.querySelector('#rag-build-log textarea') || {}).value?.includes('incremental build')",
        timeout=120_000,
    )
    assert "added otters.md" in page.input_value("#rag-build-log textarea")
    ask(page, "Why do sea otters hold hands while they sleep?")
    assert "so that they do not drift apart" in page.inner_text("#rag-chat")
    assert "otters.md" in page.inner_text("#rag-chat")

    page.click("#rag-doc input")
    page.click("#rag-doc [role=option][aria-label='otters.md']")
    page.click("#rag-delete")
    page.wait_for_function(
        "() => (document.querySelector('#rag-build-log textarea') || {}).value?.includes('deleted otters.md')",
        timeout=120_000,
    )
    page.wait_for_function(
        "() => document.querySelector('#rag-build-log textarea').value.includes('1 removed')", timeout=120_000
    )
    ask(page, "Why do sea otters hold hands while they sleep, again?")
    last_reply = (
        page.locator("#rag-chat .message-row").last.inner_text()
        if page.locator("#rag-chat .message-row").count()
        else page.inner_text("#rag-chat")
    )
    assert "otters.md, line" not in last_reply.split("again?")[-1]
    page.close()


HIGHLIGHTED_PIXELS = """img => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let yellow = 0;
    for (let i = 0; i < pixels.length; i += 4) {
        if (pixels[i] > 200 && pixels[i + 1] > 150 && pixels[i + 2] < 180) yellow++;
    }
    return yellow;
}"""


def test_a_pdf_citation_opens_the_rendered_page_with_the_quote_highlighted(browser, page_url):
    page = open_chat(browser, page_url)
    ask(page, "When was the first automatic switch for kettles sold?")
    chat = page.inner_text("#rag-chat")
    assert "sold in 1955" in chat and ("kettles.pdf, p. 1" in chat or "kettles.pdf, pp. 1–2" in chat)
    across = "kettles.pdf, pp. 1–2" in chat  # the quote chosen may run on over the page break
    citation = page.locator("#rag-sources details", has_text="kettles.pdf").first
    citation.locator("summary").click()
    images = citation.locator("figure.rag-page img")
    images.first.wait_for(state="visible", timeout=30_000)
    assert images.count() == (2 if across else 1)  # a quote across pages shows both
    for n in range(images.count()):
        image = images.nth(n)
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=image.element_handle(), timeout=30_000
        )
        assert image.evaluate("img => img.naturalWidth") > 500  # a real page picture was decoded, not a broken icon
        assert image.evaluate(HIGHLIGHTED_PIXELS) > 200  # the quote's boxes are drawn on it
    captions = citation.locator("figcaption").all_inner_texts()
    assert captions[0].startswith("page 1 of kettles.pdf") and (not across or captions[1].startswith("page 2 of"))
    assert "sold in 1955" in citation.locator("mark").inner_text()
    page.close()


def test_upload_of_a_disallowed_type_is_refused_with_a_reason(browser, page_url, tmp_path):
    page = open_chat(browser, page_url, documents=True)
    bad = tmp_path / "payload.svg"
    bad.write_text("<svg onload=alert(1)></svg>")
    page.set_input_files("#rag-upload input[type=file]", str(bad))
    page.wait_for_timeout(3000)
    log_text = page.input_value("#rag-build-log textarea")
    corpus_listing = page.inner_text("#rag-doc") if page.locator("#rag-doc").count() else ""
    assert "payload.svg" not in corpus_listing
    assert log_text == "" or "refused" in log_text or "not an accepted type" in log_text
    page.close()


def test_the_conversation_downloads_as_markdown_and_json_with_quotes_that_stand(browser, page_url, seed_settings):
    page = open_chat(browser, page_url)
    assert page.locator("#rag-export").is_disabled()  # nothing to take away yet
    assert not page.locator("#rag-export-md").is_visible()  # nor written: an export is made only when asked for
    ask(page, "In how many countries will the terrorists now solve their problems?")
    ask(page, "How often should I descale the kettle?")
    page.wait_for_function("() => !document.querySelector('#rag-export').disabled", timeout=30_000)
    page.click("#rag-export")
    page.wait_for_selector("#rag-export-json", state="visible", timeout=30_000)
    files = {}
    for button in ("#rag-export-md", "#rag-export-json"):
        with page.expect_download(timeout=30_000) as download:
            page.click(button)
        files[button] = Path(download.value.path()).read_text(encoding="utf-8")
    answers = json.loads(files["#rag-export-json"])
    markdown = files["#rag-export-md"]
    assert [a["question"] for a in answers] == [
        "In how many countries will the terrorists now solve their problems?",
        "How often should I descale the kettle?",
    ]
    citations = [c for a in answers for c in a["citations"]]
    assert len(citations) >= 2
    for c in citations:
        assert (seed_settings.corpus / c["source"]).read_text(encoding="utf-8")[c["start"] : c["end"]] == c["quote"]
        unmarked = markdown.replace("**", "")  # the answer is marked in bold inside the quote
        assert "> " + c["quote"].splitlines()[0] in unmarked and f"characters {c['start']}–{c['end']}" in markdown
    page.close()


def test_the_chat_fits_a_phone_width_window_and_long_file_names_wrap(browser, page_url, tmp_path):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(page_url)
    page.wait_for_selector("#rag-question textarea")
    ask(page, "How many parcels did the northern distribution centre ship in the third quarter?")
    page.click("#rag-sources details[data-n='1'] summary")
    page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
    assert (tmp_path / "phone.png").stat().st_size > 10_000
    assert "forty thousand parcels" in page.inner_text("#rag-chat")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    for selector in ("#rag-question textarea", "#rag-ask", "#rag-sources details[data-n='1'] summary", "#rag-status"):
        box = page.locator(selector).first.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
    page.close()


def test_the_page_fetches_nothing_from_outside_this_machine(browser, page_url):
    page = open_chat(browser, page_url, documents=True)
    ask(page, "How often should I descale the kettle?")
    page.close()
    assert REQUESTED_HOSTS and REQUESTED_HOSTS <= {"127.0.0.1", "localhost", ""}, REQUESTED_HOSTS

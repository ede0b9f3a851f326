"""The browser chat. The only module that imports gradio: callbacks call the library and render."""

from __future__ import annotations

import base64
import html
import logging
import queue
import sys
import threading
from pathlib import Path

from rag.answer import answer
from rag.config import Settings, credentials, is_loopback
from rag.documents import add_document, delete_document, list_documents
from rag.errors import ConfigError, IndexDamaged, RagError
from rag.indexer import build, is_stale
from rag.pages import cited_pages
from rag.records import Answer, Citation
from rag.retrieve import Retriever

log = logging.getLogger(__name__)

CSS = """
.rag-source { border: 1px solid var(--border-color-primary); border-radius: 6px; margin: 0 0 8px; padding: 6px 10px; }
.rag-source summary { cursor: pointer; font-weight: 600; }
.rag-passage { white-space: pre-wrap; font-size: 0.92em; line-height: 1.45; margin-top: 6px; }
.rag-passage mark { background: #ffe58a; color: #000; padding: 0 1px; }
.rag-note { color: var(--body-text-color-subdued); font-size: 0.9em; }
.rag-page { margin: 6px 0; }
.rag-page img { max-width: 100%; border: 1px solid var(--border-color-primary); }
.rag-page figcaption { font-size: 0.85em; color: var(--body-text-color-subdued); }
"""


def place(c: Citation) -> str:
    """Where a quote stands, for a person: "p. 4", "pp. 4–5", the section path, or the lines."""
    if c.section:
        return f"{c.where()} · § {c.section}" if c.pages else f"§ {c.section}"
    return c.where() or f"lines {c.line_start}–{c.line_end}"


def render_pages(c: Citation, pages) -> str:
    """The rendered PDF page(s) of a citation as inline PNG images, each with its page number."""
    figures = []
    for image in pages:
        label = f" (printed {image.label})" if image.label and image.label != str(image.page) else ""
        caption = f"page {image.page}{label} of {c.source}, quote [{c.n}] highlighted"
        data = base64.b64encode(image.png).decode("ascii")
        figures.append(
            f"<figure class='rag-page' data-page='{image.page}'><img alt='{html.escape(caption, quote=True)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return "".join(figures)


def render_sources(result: Answer, pages=None) -> str:
    """HTML for the sources panel: each citation opens its passage with the quote highlighted, and a
    PDF citation its rendered page(s) with the quoted characters marked (`pages(citation)` gives them).

    Every piece of document text is escaped, so nothing from a document can run in the browser.
    """
    if result.abstained:
        if not result.nearest:
            return "<p class='rag-note'>No sources.</p>"
        items = "".join(
            f"<details class='rag-source rag-nearest'><summary>{html.escape(h.passage.source)} · "
            f"lines {h.passage.line_start}–{h.passage.line_end}</summary>"
            f"<div class='rag-passage'>{html.escape(h.passage.text)}</div></details>"
            for h in result.nearest
        )
        return "<p class='rag-note'>Nearest passages, for reference only (not an answer):</p>" + items
    items = []
    for c in result.citations:
        passage = result.passages.get(c.passage_id)
        if passage is None:
            body = f"<mark>{html.escape(c.quote)}</mark>"
        else:
            a, b = c.start - passage.start, c.end - passage.start
            text = passage.text
            body = f"{html.escape(text[:a])}<mark data-n='{c.n}'>{html.escape(text[a:b])}</mark>{html.escape(text[b:])}"
        figures = render_pages(c, pages(c)) if pages is not None else ""
        items.append(
            f"<details class='rag-source' data-n='{c.n}'><summary>[{c.n}] {html.escape(c.source)} · "
            f"{html.escape(place(c))} · passage {html.escape(c.passage_id)}</summary>"
            f"{figures}<div class='rag-passage'>{body}</div></details>"
        )
    return "".join(items)


def chat_text(result: Answer) -> str:
    """The assistant's message: the quotes with markers, then one line per citation."""
    if not result.citations:
        return result.text
    sources = "\n".join(f"[{c.n}] {c.source}, {place(c)}" for c in result.citations)
    return f"{result.text}\n\n{sources}"


def status_line(retriever: Retriever) -> str:
    """Files, passages, model and build time of the index being served."""
    manifest = retriever.index.manifest
    line = (
        f"{len(manifest.files)} files · {manifest.passages} passages · model {manifest.model} · "
        f"built {manifest.built_at.replace('T', ' ').replace('+00:00', ' UTC')}"
    )
    if manifest.skipped:
        line += f" · {len(manifest.skipped)} skipped"
    if retriever.reload_error:
        line += f" · newest build not served: {retriever.reload_error}"
    return line


def _message_text(message: dict) -> str:
    """The plain text of a chat message (stored escaped, maybe split into parts by gradio)."""
    content = message.get("content", "")
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return html.unescape(str(content))


def make_app(settings: Settings, retriever: Retriever):
    """The Blocks app: chat, sources panel, status line, documents, and the `/ask` API."""
    import gradio as gr

    def respond(message: str, history: list[dict]):
        history = list(history or [])
        asked = [_message_text(m) for m in history if m.get("role") == "user"]
        try:
            result = answer(message, retriever, settings, history=asked)
            index = retriever.index
            reply = chat_text(result)
            sources = render_sources(result, pages=lambda c: cited_pages(settings.corpus, index, c))
            searched = f"Searched for: {result.searched_for}" if result.searched_for else ""
        except RagError as error:
            reply, sources, searched = f"Sorry, that failed: {error}", "", ""
        # The chatbot renders HTML even without Markdown: escape so document text shows as text.
        history += [
            {"role": "user", "content": html.escape(str(message))},
            {"role": "assistant", "content": html.escape(reply)},
        ]
        return history, sources, searched, status_line(retriever), ""

    def ask(question: str) -> dict:
        """Answer one question with verified, cited quotes (the `rag ask --json` object)."""
        return answer(question, retriever, settings).to_dict()

    def rebuild():
        yield from _rebuild_with_progress(settings, retriever)

    def upload(files):
        notes = []
        for path in files or []:
            path = Path(path)
            try:
                added = add_document(
                    settings.corpus, path.name, path.read_bytes(), settings.extensions, settings.max_upload_bytes
                )
                notes.append(f"added {added.name}")
            except RagError as error:
                notes.append(f"refused: {error}")
        yield "; ".join(notes) or "nothing uploaded", gr.update(choices=list_documents(settings.corpus, settings.extensions))
        for progress in _rebuild_with_progress(settings, retriever):
            yield "; ".join(notes) + "\n" + progress, gr.update()

    def delete(source: str | None):
        if not source:
            return "choose a document to delete", gr.update()
        try:
            delete_document(settings.corpus, source, settings.extensions)
        except RagError as error:
            return f"refused: {error}", gr.update()
        note = f"deleted {source}"
        for progress in _rebuild_with_progress(settings, retriever):
            note = f"deleted {source}\n{progress}"
        return note, gr.update(choices=list_documents(settings.corpus, settings.extensions), value=None)

    examples = [q.strip() for q in settings.examples.split("|") if q.strip()]
    with gr.Blocks(title="rag — ask your documents") as demo:
        gr.Markdown("## Ask your documents\nEvery answer is made of verbatim quotes, each checked against its source file.")
        status = gr.Markdown(status_line(retriever), elem_id="rag-status")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="Chat", elem_id="rag-chat", height=460, render_markdown=False,
                    sanitize_html=True, allow_tags=False, feedback_options=None,
                )
                question = gr.Textbox(label="Question", placeholder="Ask about your documents…", elem_id="rag-question")
                with gr.Row():
                    send = gr.Button("Ask", variant="primary", elem_id="rag-ask")
                    gr.ClearButton([chatbot, question], value="New chat")
                searched = gr.Markdown(elem_id="rag-searched")
                if examples:
                    gr.Examples(examples=examples, inputs=question, label="Examples")
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                sources = gr.HTML("<p class='rag-note'>Citations appear here; open one to see its passage.</p>", elem_id="rag-sources")
        with gr.Accordion("Documents and index", open=False):
            with gr.Row():
                files = gr.File(
                    label="Add documents (" + ", ".join(settings.extensions) + ")", file_count="multiple",
                    file_types=list(settings.extensions), elem_id="rag-upload",
                )
                with gr.Column():
                    chosen = gr.Dropdown(list_documents(settings.corpus, settings.extensions), label="Document", elem_id="rag-doc")
                    remove = gr.Button("Delete document", variant="stop", elem_id="rag-delete")
                    rebuild_button = gr.Button("Rebuild index", elem_id="rag-rebuild")
            build_log = gr.Textbox(label="Index", lines=3, interactive=False, elem_id="rag-build-log")

        outputs = [chatbot, sources, searched, status, question]
        question.submit(respond, [question, chatbot], outputs, api_visibility="private")
        send.click(respond, [question, chatbot], outputs, api_visibility="private")
        rebuild_button.click(rebuild, None, build_log, api_name="rebuild", concurrency_limit=1)
        files.upload(upload, files, [build_log, chosen], api_visibility="private", concurrency_limit=1)
        remove.click(delete, chosen, [build_log, chosen], api_visibility="private", concurrency_limit=1)
        gr.Timer(5).tick(lambda: status_line(retriever), None, status, api_visibility="private")
        demo.load(  # a page opened later must list the documents as they are now
            lambda: (status_line(retriever), gr.update(choices=list_documents(settings.corpus, settings.extensions))),
            None, [status, chosen], api_visibility="private",
        )
        gr.api(ask, api_name="ask")
    return demo


def _rebuild_with_progress(settings: Settings, retriever: Retriever):
    """Run an incremental build in a thread, yielding its progress lines and then its summary."""
    messages: queue.Queue = queue.Queue()
    outcome: dict = {}

    def work():
        try:
            outcome["summary"] = build(settings, progress=messages.put)
        except RagError as error:
            outcome["error"] = error
        finally:
            messages.put(None)

    threading.Thread(target=work, name="rag-rebuild", daemon=True).start()
    shown = ["rebuilding…"]
    yield "\n".join(shown)
    while (message := messages.get()) is not None:
        shown = shown[-3:] + [message]
        yield "\n".join(shown)
    if "error" in outcome:
        yield f"build failed, the index in use is unchanged: {outcome['error']}"
        return
    retriever.refresh()
    yield outcome["summary"].line()


def serve(settings: Settings, watch: bool = False, no_auth: bool = False, block: bool = True):
    """Build the index if missing or stale, then serve the chat; returns the app when not blocking."""
    accounts = credentials(settings, no_auth)
    if not is_loopback(settings.host) and accounts is None:
        print(f"rag: WARNING: serving {settings.host} without authentication (--no-auth)", file=sys.stderr)
    if is_stale(settings):
        print(f"rag: building the index of {settings.corpus} …", file=sys.stderr)
        print("rag: " + build(settings).line(), file=sys.stderr)
    try:
        retriever = Retriever(settings)
    except IndexDamaged as error:  # a build replaces an unusable index in full
        print(f"rag: {error}; rebuilding it now …", file=sys.stderr)
        print("rag: " + build(settings).line(), file=sys.stderr)
        retriever = Retriever(settings)
    if watch:
        from rag.watch import start_watch_thread

        start_watch_thread(settings, on_build=lambda summary: retriever.refresh())
    demo = make_app(settings, retriever)
    demo.queue(default_concurrency_limit=16)
    try:
        demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            auth=accounts,
            max_file_size=settings.max_upload_bytes,
            prevent_thread_lock=not block,
            css=CSS,
            show_error=False,
            footer_links=[],
        )
    except OSError as error:
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port} ({error}); pass --port with a free port"
        ) from None
    return demo

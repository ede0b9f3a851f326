"""The browser chat. The only module that imports gradio: callbacks call the library and render."""

from __future__ import annotations

import html
import logging
import os
import queue
import signal
import sys
import threading
import uuid
from pathlib import Path

from rag.answer.quotes import answer
from rag.build.indexer import build, is_stale
from rag.build.summary import BuildSummary
from rag.config import Settings, is_loopback
from rag.errors import IndexDamaged, RagError
from rag.index import kept
from rag.search import Retriever
from rag.serve import client, export, server
from rag.serve.auth import credentials
from rag.serve.page_images import cited_pages
from rag.serve.render import CSS, chat_html, render_sources, status_line
from rag.serve.uploads import add_document, delete_document, list_documents
from rag.types import Answer, Citation

log = logging.getLogger(__name__)

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # gradio (imported later) would call home on start and on use
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

LOCAL_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
"""The page's fonts: the browser's own, so that opening the chat fetches nothing from outside."""
LOCAL_MONO_FONTS = ["ui-monospace", "monospace"]


def _message_text(message: dict) -> str:
    """The plain text of a chat message (stored escaped, maybe split into parts by gradio)."""
    content = message.get("content", "")
    if isinstance(content, list):
        content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return html.unescape(str(content))


class LocalBackend:
    """Where the chat's questions are answered and its rebuilds run: this process, from the live index.

    `rag serve --ray` swaps in rag.cluster.replicas.ReplicaBackend, whose answers come from Ray Serve replicas.
    """

    def __init__(self, settings: Settings, retriever: Retriever):
        self.settings, self.retriever = settings, retriever

    def answer(self, question: str, history: list[str] = ()) -> Answer:
        """A verified, cited answer (or the corpus-does-not-answer one)."""
        return answer(question, self.retriever, self.settings, history=history)

    def pages(self, citation: Citation) -> list:
        """The rendered PDF pages of a citation, its quote highlighted ([] for other formats)."""
        return cited_pages(self.settings.corpus, self.retriever.index, citation)

    def status(self) -> str:
        """The status line of the index being served."""
        return status_line(self.retriever)

    def build(self, progress) -> BuildSummary:
        """An incremental build of the corpus."""
        return build(self.settings, progress=progress)

    def refresh(self) -> None:
        """Start serving a version a build just published."""
        self.retriever.refresh()


def make_app(settings: Settings, retriever: Retriever | None, backend: LocalBackend | None = None, folder=None):
    """The Blocks app: chat, sources panel, status line, documents, exports, and the `/ask` API. Exports are
    written into `folder`, the server's private folder."""
    import gradio as gr

    folder = Path(folder) if folder is not None else server.private_folder()

    backend = backend or LocalBackend(settings, retriever)

    def respond(message: str, history: list[dict], answers: list[dict]):
        history, answers = list(history or []), list(answers or [])
        asked = [_message_text(m) for m in history if m.get("role") == "user"]
        try:
            result = backend.answer(message, asked)
            reply = chat_html(result)
            sources = render_sources(result, pages=backend.pages)
            searched = f"Searched for: {result.searched_for}" if result.searched_for else ""
            answers.append(result.to_dict())
        except RagError as error:
            reply, sources, searched = html.escape(f"Sorry, that failed: {error}"), "", ""
        # The chatbot renders HTML even without Markdown: escape so document text shows as text.
        history += [
            {"role": "user", "content": html.escape(str(message))},
            {"role": "assistant", "content": reply},  # already escaped: chat_html
        ]
        hidden = gr.update(value=None, visible=False)  # an export is written only when asked for
        return history, sources, searched, backend.status(), "", answers, gr.update(interactive=True), hidden, hidden

    def start_over():
        hidden = gr.update(value=None, visible=False)
        return [], [], gr.update(interactive=False), hidden, hidden

    def export_conversation(answers: list[dict]):
        markdown, json_file = write_exports(answers, folder)
        return gr.update(value=markdown, visible=True), gr.update(value=json_file, visible=True)

    def ask(question: str) -> dict:
        """Answer one question with verified, cited quotes (the `rag ask --json` object)."""
        return backend.answer(question).to_dict()

    def rebuild():
        yield from _rebuild_with_progress(backend)

    def upload(files):
        notes = []
        for path in files or []:
            path = Path(path)
            try:
                added, replaced = add_document(
                    settings.corpus,
                    path.name,
                    path.read_bytes(),
                    settings.extensions,
                    settings.max_upload_bytes,
                    keep=lambda earlier: kept.keep(settings.index, earlier),
                )
                notes.append(
                    f"replaced {added.name} (its earlier version answers until the new one is indexed)"
                    if replaced
                    else f"added {added.name}"
                )
            except RagError as error:
                notes.append(f"refused: {error}")
        yield (
            "; ".join(notes) or "nothing uploaded",
            gr.update(choices=list_documents(settings.corpus, settings.extensions)),
        )
        for progress in _rebuild_with_progress(backend):
            yield "; ".join(notes) + "\n" + progress, gr.update()

    def delete(source: str | None):
        if not source:
            return "choose a document to delete", gr.update()
        try:
            delete_document(settings.corpus, source, settings.extensions)
        except RagError as error:
            return f"refused: {error}", gr.update()
        note = f"deleted {source}"
        for progress in _rebuild_with_progress(backend):
            note = f"deleted {source}\n{progress}"
        return note, gr.update(choices=list_documents(settings.corpus, settings.extensions), value=None)

    examples = [q.strip() for q in settings.examples.split("|") if q.strip()]
    with gr.Blocks(title="rag — ask your documents", analytics_enabled=False) as demo:
        gr.Markdown(
            "## Ask your documents\nEvery answer is made of verbatim quotes, each checked against its source file."
        )
        status = gr.Markdown(backend.status(), elem_id="rag-status")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="Chat",
                    elem_id="rag-chat",
                    height=460,
                    render_markdown=False,
                    sanitize_html=True,
                    allow_tags=False,
                    feedback_options=None,
                )
                question = gr.Textbox(label="Question", placeholder="Ask about your documents…", elem_id="rag-question")
                with gr.Row():
                    send = gr.Button("Ask", variant="primary", elem_id="rag-ask")
                    new_chat = gr.ClearButton([chatbot, question], value="New chat", elem_id="rag-new-chat")
                with gr.Row():
                    export_button = gr.Button("Export conversation", interactive=False, size="sm", elem_id="rag-export")
                    save_markdown = gr.DownloadButton(
                        "Download as Markdown", visible=False, size="sm", elem_id="rag-export-md"
                    )
                    save_json = gr.DownloadButton(
                        "Download as JSON", visible=False, size="sm", elem_id="rag-export-json"
                    )
                searched = gr.Markdown(elem_id="rag-searched")
                if examples:
                    gr.Examples(examples=examples, inputs=question, label="Examples")
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                sources = gr.HTML(
                    "<p class='rag-note'>Citations appear here; open one to see its passage.</p>", elem_id="rag-sources"
                )
        with gr.Accordion("Documents and index", open=False):
            with gr.Row():
                files = gr.File(
                    label="Add documents (" + ", ".join(settings.extensions) + ")",
                    file_count="multiple",
                    file_types=list(settings.extensions),
                    elem_id="rag-upload",
                )
                with gr.Column():
                    chosen = gr.Dropdown(
                        list_documents(settings.corpus, settings.extensions), label="Document", elem_id="rag-doc"
                    )
                    remove = gr.Button("Delete document", variant="stop", elem_id="rag-delete")
                    rebuild_button = gr.Button("Rebuild index", elem_id="rag-rebuild")
            build_log = gr.Textbox(label="Index", lines=3, interactive=False, elem_id="rag-build-log")

        answers = gr.State([])
        outputs = [chatbot, sources, searched, status, question, answers, export_button, save_markdown, save_json]
        question.submit(respond, [question, chatbot, answers], outputs, api_visibility="private")
        send.click(respond, [question, chatbot, answers], outputs, api_visibility="private")
        new_chat.click(
            start_over, None, [chatbot, answers, export_button, save_markdown, save_json], api_visibility="private"
        )
        export_button.click(export_conversation, answers, [save_markdown, save_json], api_visibility="private")
        rebuild_button.click(rebuild, None, build_log, api_name="rebuild", concurrency_limit=1)
        files.upload(upload, files, [build_log, chosen], api_visibility="private", concurrency_limit=1)
        remove.click(delete, chosen, [build_log, chosen], api_visibility="private", concurrency_limit=1)
        gr.Timer(5).tick(lambda: backend.status(), None, status, api_visibility="private")
        demo.load(  # a page opened later must list the documents as they are now
            lambda: (backend.status(), gr.update(choices=list_documents(settings.corpus, settings.extensions))),
            None,
            [status, chosen],
            api_visibility="private",
        )
        gr.api(ask, api_name="ask")
    return demo


def write_exports(answers: list[dict], folder: Path) -> tuple[str | None, str | None]:
    """The conversation as a Markdown and a JSON file, readable by this user alone, in a new folder inside the
    server's private `folder` (None before any answer)."""
    if not answers:
        return None, None
    inside = Path(folder) / f"export-{uuid.uuid4().hex[:12]}"
    inside.mkdir(mode=0o700, parents=True)
    markdown, json_file = inside / "conversation.md", inside / "conversation.json"
    for path, text in ((markdown, export.as_markdown(answers)), (json_file, export.as_json(answers))):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
    return str(markdown), str(json_file)


def _rebuild_with_progress(backend: LocalBackend):
    """Run an incremental build in a thread, yielding its progress lines and then its summary."""
    messages: queue.Queue = queue.Queue()
    outcome: dict = {}

    def work():
        try:
            outcome["summary"] = backend.build(progress=messages.put)
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
    backend.refresh()
    yield outcome["summary"].line()


def serve(settings: Settings, watch: bool = False, no_auth: bool = False, block: bool = True):
    """Build the index if missing or stale, then serve the chat; returns the running server when not blocking."""
    accounts = accounts_for(settings, no_auth)
    build_if_stale(settings, build)
    try:
        retriever = Retriever(settings)
    except IndexDamaged as error:  # a build replaces an unusable index in full
        print(f"rag: {error}; rebuilding it now …", file=sys.stderr)
        print("rag: " + build(settings).line(), file=sys.stderr)
        retriever = Retriever(settings)
    if watch:
        from rag.build.watch import start_watch_thread

        start_watch_thread(settings, on_build=lambda summary: retriever.refresh())
    folder = server.private_folder()
    return launch(make_app(settings, retriever, folder=folder), settings, accounts, block, folder)


def accounts_for(settings: Settings, no_auth: bool) -> list[tuple[str, str]] | None:
    """The accounts the page asks for (refusing a network-facing page without any, unless --no-auth,
    which is then said loudly)."""
    accounts = credentials(settings, no_auth)
    if not is_loopback(settings.host) and accounts is None:
        print(f"rag: WARNING: serving {settings.host} without authentication (--no-auth)", file=sys.stderr)
    return accounts


def build_if_stale(settings: Settings, builder, where: str = "") -> None:
    """Bring a missing or stale index up to date before serving it, saying so."""
    if is_stale(settings):
        print(f"rag: building the index of {settings.corpus}{where} …", file=sys.stderr)
        print("rag: " + builder(settings).line(), file=sys.stderr)


def launch(demo, settings: Settings, accounts: list[tuple[str, str]] | None, block: bool = True, folder=None):
    """Serve the Blocks app behind the server's guards on settings.host:settings.port, announced to `rag ask`;
    returns the running server when not blocking."""
    import gradio as gr

    demo.queue(default_concurrency_limit=16)
    app = server.guarded_app(settings)
    gr.mount_gradio_app(
        app,
        demo,
        path="",
        auth=accounts,
        max_file_size=settings.max_upload_bytes,
        css=CSS,
        theme=gr.themes.Default(font=LOCAL_FONTS, font_mono=LOCAL_MONO_FONTS),
        show_error=False,
        footer_links=[],
    )
    running = server.start(app, settings, folder)
    running.on_close.append(demo.close)
    running.on_close.append(lambda: client.withdraw(settings))
    print(f"* Running on local URL:  {running.url}", flush=True)
    client.announce(settings, running.url)
    if not block:
        return running
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=running.close, daemon=True).start())
    try:
        running.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.close()
    return running

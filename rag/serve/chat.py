"""The browser chat. The only module that imports gradio: callbacks call the library and render."""

import html
import logging
import os
import queue
import threading
import uuid
from pathlib import Path

from rag.config import Settings
from rag.errors import RagError
from rag.index import kept
from rag.serve import export, server
from rag.serve.audit import Audit
from rag.serve.library import Access, Answerer, LocalBackend
from rag.serve.render import CSS, chat_html, render_sources
from rag.serve.uploads import add_document, delete_document, list_documents

log = logging.getLogger(__name__)

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # gradio (imported when the page is made) would call home
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


def make_app(settings: Settings, backend, access: Access, audit: Audit | None = None, folder=None):
    """The Blocks app: chat, sources panel, status line, documents, exports, and the `/ask` API, each showing a
    user the collections they may read alone (`access`) and letting editors change only theirs. Exports are
    written into `folder`, the server's private folder."""
    import gradio as gr  # here, after the server's private folder is Gradio's (annotations below are evaluated)

    folder = Path(folder) if folder is not None else server.private_folder()
    audit = audit or Audit(None)
    several = access.library.names != [None]

    def user_of(request) -> str | None:
        return getattr(request, "username", None) if request is not None else None

    answerer = Answerer(backend, access, audit)
    ask_for = answerer.ask

    def respond(message: str, history: list[dict], answers: list[dict], picked, scope_text, request: gr.Request):
        history, answers, user = list(history or []), list(answers or []), user_of(request)
        asked = [_message_text(m) for m in history if m.get("role") == "user"]
        try:
            result = ask_for(user, message, asked, picked, scope_text)
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
        status = backend.status(access.readable(user))
        return history, sources, searched, status, "", answers, gr.update(interactive=True), hidden, hidden

    def start_over():
        hidden = gr.update(value=None, visible=False)
        return [], [], gr.update(interactive=False), hidden, hidden

    def export_conversation(answers: list[dict]):
        markdown, json_file = write_exports(answers, folder)
        return gr.update(value=markdown, visible=True), gr.update(value=json_file, visible=True)

    def ask(question: str, collections: str = "", scope: str = "", request: gr.Request = None) -> dict:
        """Answer one question with verified, cited quotes (the `rag ask --json` object); `collections` narrows it
        to some of the caller's collections (comma-separated), `scope` to folders or files in them."""
        picked = [name.strip() for name in collections.split(",") if name.strip()]
        return ask_for(user_of(request), question, (), picked, scope).to_dict()

    def editable(user) -> list[str | None]:
        return [name for name in access.readable(user) if access.may_edit(user, name)]

    def documents(user) -> list[tuple[str, str]]:
        """(label, value) of the documents `user` may delete."""
        found = []
        for name in editable(user):
            for source in list_documents(backend.settings_of(name).corpus, settings.extensions):
                found.append((f"{name}: {source}" if name else source, f"{name}{PLACE}{source}" if name else source))
        return found

    def place_of(value: str) -> tuple[str | None, str]:
        name, sep, source = (value or "").partition(PLACE)
        return (name, source) if sep else (None, value)

    def editing(user, name, what: str) -> Settings:
        try:
            return access.for_editing(user, name, what)
        except RagError:
            audit.write(f"{what} refused", user, collection=name)
            raise

    def rebuild(target, request: gr.Request):
        user, name = user_of(request), target or None
        try:
            editing(user, name, "rebuild")
        except RagError as error:
            yield str(error)
            return
        audit.write("rebuild", user, collection=name)
        yield from _rebuild_with_progress(backend, name)

    def upload(files, target, request: gr.Request):
        user, name = user_of(request), target or None
        try:
            shelf = editing(user, name, "upload")
        except RagError as error:
            yield str(error), gr.update()
            return
        notes = []
        for path in files or []:
            path = Path(path)
            try:
                added, replaced = add_document(
                    shelf.corpus,
                    path.name,
                    path.read_bytes(),
                    settings.extensions,
                    settings.max_upload_bytes,
                    keep=lambda earlier: kept.keep(shelf.index, earlier),
                )
                notes.append(
                    f"replaced {added.name} (its earlier version answers until the new one is indexed)"
                    if replaced
                    else f"added {added.name}"
                )
                audit.write("upload", user, collection=name, document=added.name, replaced=replaced)
            except RagError as error:
                notes.append(f"refused: {error}")
        yield "; ".join(notes) or "nothing uploaded", gr.update(choices=documents(user))
        for progress in _rebuild_with_progress(backend, name):
            yield "; ".join(notes) + "\n" + progress, gr.update()

    def delete(value: str | None, request: gr.Request):
        user = user_of(request)
        if not value:
            return "choose a document to delete", gr.update()
        name, source = place_of(value)
        try:
            delete_document(editing(user, name, "delete").corpus, source, settings.extensions)
        except RagError as error:
            return str(error) if str(error).startswith("refused") else f"refused: {error}", gr.update()
        audit.write("delete", user, collection=name, document=source)
        note = f"deleted {source}"
        for progress in _rebuild_with_progress(backend, name):
            note = f"deleted {source}\n{progress}"
        return note, gr.update(choices=documents(user), value=None)

    def opened(request: gr.Request):
        """What a page opened now shows its user: their collections, documents and status."""
        user = user_of(request)
        mine = [n for n in access.readable(user) if n]
        targets = [n or "" for n in editable(user)]
        return (
            backend.status(access.readable(user)),
            gr.update(choices=mine, value=mine, visible=bool(mine)),
            gr.update(choices=documents(user)),
            gr.update(choices=targets, value=targets[0] if targets else None, visible=several and bool(targets)),
            gr.update(visible=bool(targets)),
        )

    examples = [q.strip() for q in settings.examples.split("|") if q.strip()] if not several else []
    with gr.Blocks(title="rag — ask your documents", analytics_enabled=False) as demo:
        gr.Markdown(
            "## Ask your documents\nEvery answer is made of verbatim quotes, each checked against its source file."
        )
        status = gr.Markdown("", elem_id="rag-status")
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
                with gr.Accordion("Where to look", open=False):
                    picked = gr.CheckboxGroup([], label="Collections", visible=False, elem_id="rag-collections")
                    scope = gr.Textbox(
                        label="Only in these folders or files (comma-separated, empty: everywhere)",
                        placeholder="reports/2026, notes/plan.md",
                        elem_id="rag-scope",
                    )
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
        with gr.Accordion("Documents and index", open=False, visible=True) as documents_panel:
            target = gr.Dropdown([], label="Collection", visible=False, elem_id="rag-target")
            with gr.Row():
                files = gr.File(
                    label="Add documents (" + ", ".join(settings.extensions) + ")",
                    file_count="multiple",
                    file_types=list(settings.extensions),
                    elem_id="rag-upload",
                )
                with gr.Column():
                    chosen = gr.Dropdown([], label="Document", elem_id="rag-doc")
                    remove = gr.Button("Delete document", variant="stop", elem_id="rag-delete")
                    rebuild_button = gr.Button("Rebuild index", elem_id="rag-rebuild")
            build_log = gr.Textbox(label="Index", lines=3, interactive=False, elem_id="rag-build-log")

        answers = gr.State([])
        inputs = [question, chatbot, answers, picked, scope]
        outputs = [chatbot, sources, searched, status, question, answers, export_button, save_markdown, save_json]
        question.submit(respond, inputs, outputs, api_visibility="private")
        send.click(respond, inputs, outputs, api_visibility="private")
        new_chat.click(
            start_over, None, [chatbot, answers, export_button, save_markdown, save_json], api_visibility="private"
        )
        export_button.click(export_conversation, answers, [save_markdown, save_json], api_visibility="private")
        rebuild_button.click(rebuild, target, build_log, api_visibility="private", concurrency_limit=1)
        files.upload(upload, [files, target], [build_log, chosen], api_visibility="private", concurrency_limit=1)
        remove.click(delete, chosen, [build_log, chosen], api_visibility="private", concurrency_limit=1)
        gr.Timer(5).tick(
            lambda request: backend.status(access.readable(user_of(request))), None, status, api_visibility="private"
        )
        demo.load(opened, None, [status, picked, chosen, target, documents_panel], api_visibility="private")
        gr.api(ask, api_name="ask")
    return demo


PLACE = "\x1f"
"""Between a collection's name and a document's path in the delete list's values (no path holds it)."""


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


def _rebuild_with_progress(backend: LocalBackend, name: str | None = None):
    """Run an incremental build of collection `name` in a thread, yielding its progress lines and then its summary."""
    messages: queue.Queue = queue.Queue()
    outcome: dict = {}

    def work():
        try:
            outcome["summary"] = backend.build(messages.put, name)
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
    backend.refresh(name)
    yield outcome["summary"].line()


def mount(app, demo, settings: Settings, accounts) -> None:
    """Serve the Blocks app `demo` at the root of `app` (the server's guarded app), behind its log-in when there are
    accounts, with the browser's own fonts and no outside links."""
    import gradio as gr

    demo.queue(default_concurrency_limit=16)
    gr.mount_gradio_app(
        app,
        demo,
        path="",
        auth_dependency=(lambda request: request.scope.get("rag_user")) if accounts is not None else None,
        max_file_size=settings.max_upload_bytes,
        css=CSS,
        theme=gr.themes.Default(font=LOCAL_FONTS, font_mono=LOCAL_MONO_FONTS),
        show_error=False,
        footer_links=[],
    )

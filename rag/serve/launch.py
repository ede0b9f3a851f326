"""`rag serve`: build what is stale, open the collections, and serve the chat page, the OpenAI-compatible endpoint
and MCP on one private server (rag.serve.server), behind the log-in when there are accounts."""

import signal
import sys
import threading
from pathlib import Path

from rag.build.indexer import build, is_stale
from rag.config import Settings, is_loopback
from rag.errors import IndexDamaged, RagError
from rag.serve import chat, client, server
from rag.serve.audit import FILE as AUDIT_FILE
from rag.serve.audit import Audit
from rag.serve.auth import accounts_file
from rag.serve.library import Access, Answerer, Library, LocalBackend
from rag.serve.login import AccountsFile, Login, Sessions


def serve(settings: Settings, watch: bool = False, no_auth: bool = False, block: bool = True, collections=None):
    """Build each missing or stale index, then serve the chat over the collections named (or RAG_CORPUS alone);
    returns the running server when not blocking."""
    accounts = accounts_for(settings, no_auth)
    for collection in collections or [None]:
        shelf = collection.settings(settings) if collection else settings
        try:
            build_if_stale(shelf, build, f" ({collection.name})" if collection else "")
        except RagError as error:
            if collection is None:
                raise
            print(f"rag: collection {collection.name} not built: {error}", file=sys.stderr)
    try:
        library = Library.open(settings, collections or [])
    except IndexDamaged as error:  # a build replaces an unusable index in full
        print(f"rag: {error}; rebuilding it now …", file=sys.stderr)
        print("rag: " + build(settings).line(), file=sys.stderr)
        library = Library.open(settings, [])
    if watch:
        from rag.build.watch import start_watch_thread

        for name, shelf in library.shelves.items():
            start_watch_thread(shelf.settings, on_build=lambda summary, name=name: library.reload(name))
    folder = server.private_folder()
    access = Access(library, accounts)
    audit = audit_of(settings) if accounts is not None else Audit(None)  # one person's questions stay theirs
    backend = LocalBackend(settings, library)
    demo = chat.make_app(settings, backend, access, audit, folder)
    return launch(demo, settings, accounts, block, folder, doors=Answerer(backend, access, audit))


def accounts_for(settings: Settings, no_auth: bool) -> AccountsFile | None:
    """The accounts every surface asks a log-in of, or None (loopback without an accounts file); a network-facing
    server without accounts is refused unless --no-auth, which is then said loudly."""
    found = accounts_file(settings, no_auth)
    if not is_loopback(settings.host) and found is None:
        print(f"rag: WARNING: serving {settings.host} without authentication (--no-auth)", file=sys.stderr)
    return found


def audit_of(settings: Settings) -> Audit:
    """The audit log of a shared server, one with accounts (RAG_AUDIT, default `<index>/audit.jsonl`); a server of one
    person on loopback writes none, so no question of theirs is kept on disk."""
    return Audit(
        Path(settings.audit) if settings.audit else Path(settings.index) / AUDIT_FILE, settings.audit_questions
    )


def build_if_stale(settings: Settings, builder, where: str = "") -> None:
    """Bring a missing or stale index up to date before serving it, saying so."""
    if is_stale(settings):
        print(f"rag: building the index of {settings.corpus}{where} …", file=sys.stderr)
        print("rag: " + builder(settings).line(), file=sys.stderr)


def launch(
    demo,
    settings: Settings,
    accounts: AccountsFile | None,
    block: bool = True,
    folder=None,
    doors: Answerer | None = None,
):
    """Serve the Blocks app behind the server's guards (and, with accounts, its log-in) on settings.host:port,
    announced to `rag ask`, with the OpenAI-compatible endpoint and MCP beside it when `doors` answers for them;
    returns the running server when not blocking."""
    app = server.guarded_app(settings)
    if accounts is not None:
        proxies = frozenset(a.strip() for a in settings.trusted_proxies.split(",") if a.strip())
        sessions = Sessions(settings.session_hours)
        app.add_middleware(
            Login,
            accounts=accounts,
            sessions=sessions,
            audit=audit_of(settings),
            proxy_header=settings.proxy_user_header,
            trusted_proxies=proxies,
        )
    if doors is not None:
        _open_doors(app, doors)
    chat.mount(app, demo, settings, accounts)
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


def _open_doors(app, doors: Answerer) -> None:
    """The OpenAI-compatible endpoint and MCP at /mcp on `app`, the MCP sessions run in its lifespan. Their modules
    load only here: nothing of them is imported by `rag build`, `rag ask` or a page that does not serve them."""
    import contextlib

    from rag.serve import mcp_server, openai_api

    openai_api.add_routes(app, doors)
    tools = mcp_server.add_routes(app, doors)
    before = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application):
        async with before(application) as state, tools.session_manager.run():
            yield state

    app.router.lifespan_context = lifespan

"""The Model Context Protocol door: tools `ask`, `search` and `get_passage` for agents, over stdio (`rag mcp`) and
over streamable HTTP at `/mcp` of `rag serve` (its guards and log-in in front; a user reaches their collections
alone). Built on the official `mcp` SDK, imported only here.

Every quote and passage a tool returns is verified: it equals the text of its file (or the file's stored text of
record) at the offsets it names, checked when the tool answers; a passage that no longer stands is left out.
"""

from pathlib import Path
from typing import Any

from rag.answer.verify import verified_passage
from rag.errors import RagError
from rag.serve.export import answer_markdown
from rag.serve.library import Answerer
from rag.types import passage_key

INSTRUCTIONS = (
    "rag answers questions about the user's own documents with verbatim quotes, never generated text. Every quote "
    "and passage these tools return has been checked, character for character, against the cited file at the cited "
    "offsets. Cite them as given (file, page or section or lines, characters); when `abstained` is true the "
    "documents do not answer: say so rather than guess."
)
MAX_K = 20


def build_server(answerer: Answerer, user_of=lambda ctx: None):
    """An MCP server whose tools answer from `answerer`; `user_of(ctx)` names the caller (None: all collections)."""
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("rag", instructions=INSTRUCTIONS)
    library = answerer.backend.library

    @server.tool(
        structured_output=True,
        description="Answer a question from the user's documents with verified, cited quotes (each checked against "
        "its file at the cited offsets). `collection` names one collection to ask (default: all the caller may read).",
    )
    def ask(question: str, ctx: Context, collection: str | None = None) -> dict[str, Any]:
        try:
            result = answerer.ask(user_of(ctx), question, (), [collection] if collection else None).to_dict()
        except RagError as error:
            raise ToolError(f"rag could not answer: {error}") from None
        return {"text": answer_markdown(result), **result}

    @server.tool(
        structured_output=True,
        description="Search the user's documents: the best passages for `query`, each verified against its file, with "
        "its citation (file, lines, page or section, character span) and its relevance score.",
    )
    def search(query: str, ctx: Context, k: int = 5, collection: str | None = None) -> dict[str, Any]:
        names = answerer.access.chosen(user_of(ctx), [collection] if collection else None)
        retrievers = library.retrievers(names)
        found = []
        for retriever in retrievers:
            index = retriever.snapshot()
            for hit in retriever.search(query, k=max(1, min(k, MAX_K)), index=index):
                shown = _passage(hit.passage, hit.collection, retriever.settings.corpus, index)
                if shown is not None:
                    found.append({**shown, "score": round(hit.score, 4)})
        found.sort(key=lambda p: -p["score"])
        return {"query": query, "passages": found[: max(1, min(k, MAX_K))]}

    @server.tool(
        structured_output=True,
        description="One passage by its id (`file#n`, or `collection:file#n`), verified against its file, with the "
        "passages before and after it as context and its citation.",
    )
    def get_passage(id: str, ctx: Context) -> dict[str, Any]:
        collection, _, passage_id = id.rpartition(":") if ":" in id.split("#", 1)[0] else ("", "", id)
        names = answerer.access.chosen(user_of(ctx), [collection] if collection else None)
        source, _, number = passage_id.rpartition("#")
        for retriever in library.retrievers(names):
            index = retriever.snapshot()
            passages = index.file_passages(source)
            if not number.isdigit() or not 0 < int(number) <= len(passages):
                continue
            at = int(number) - 1
            shown = _passage(passages[at], retriever.collection, retriever.settings.corpus, index)
            if shown is None:
                break
            before = passages[at - 1].text if at > 0 else ""
            after = passages[at + 1].text if at + 1 < len(passages) else ""
            return {**shown, "context_before": before, "context_after": after}
        raise ToolError(f"no passage {id!r} in the collections you may read; `search` gives passage ids")

    return server


def _passage(passage, collection: str | None, corpus: Path, index) -> dict | None:
    """A passage as a tool returns it, or None when it no longer stands in its file."""
    place = verified_passage(passage, corpus, index)
    if place is None:
        return None
    return {
        "id": passage_key(collection, passage.id),
        "collection": collection,
        "source": passage.source,
        "start": passage.start,
        "end": passage.end,
        "line_start": passage.line_start,
        "line_end": passage.line_end,
        "text": passage.text,
        **place,
    }


def user_from_request(ctx) -> str | None:
    """The logged-in user of an HTTP tool call (set by the server's log-in), None over stdio."""
    request = getattr(ctx.request_context, "request", None)
    return request.scope.get("rag_user") if request is not None else None


def add_routes(app, answerer: Answerer):
    """Serve the tools at `/mcp` of the server's app; returns the server, whose session manager the app's
    lifespan must run."""
    from mcp.server.transport_security import TransportSecuritySettings

    server = build_server(answerer, user_from_request)
    mcp_app = server.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),  # the Guard checks hosts
    )
    app.router.routes.extend(mcp_app.routes)
    return server


def run_stdio(answerer: Answerer) -> None:
    """`rag mcp`: the tools over standard input and output, for desktop agents."""
    build_server(answerer).run("stdio")

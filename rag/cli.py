"""The `rag` command: parse flags, call one library function, print, turn errors into clean exits."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rag.config import Settings
from rag.errors import RagError
from rag.serve import admin
from rag.serve.export import FORMATS

EXIT_ERROR = 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, help="documents folder (env RAG_CORPUS, default seeds/)")
    parser.add_argument("--index", type=Path, help="index folder (env RAG_INDEX, default indexes/)")
    parser.add_argument("--model", help="sentence-transformers model name or folder (env RAG_MODEL)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")


def _no_sentence_scoring(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-sentence-scoring",
        dest="no_sentence_scoring",
        action="store_true",
        help="rank quotes by passage, without scoring each sentence (env RAG_SENTENCE_SCORING=0)",
    )


def _collections(parser: argparse.ArgumentParser, scope: bool = False) -> None:
    parser.add_argument(
        "--collection",
        action="append",
        metavar="NAME[=DIR]",
        help="work on this collection (NAME=DIR names its folder once; repeat for several); default: RAG_CORPUS alone",
    )
    if scope:
        parser.add_argument(
            "--only", metavar="PATHS", help="answer from these folders or files alone (comma-separated paths)"
        )


def _ray_flag(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help=help_text + " (env RAG_RAY_ADDRESS; needs `pip install 'rag[ray]'`)",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag",
        description="Ask questions of your documents; every answer is verbatim, cited quotes.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build or update the index (only what changed is embedded)")
    _common(build)
    build.add_argument("--full", action="store_true", help="rebuild from nothing")
    _collections(build)
    build.add_argument("--json", action="store_true", help="print the summary as JSON")
    _ray_flag(build, "read and embed on the Ray cluster at ADDRESS (`auto`: the one this machine joined)")

    ask = commands.add_parser("ask", help="answer one question with cited quotes")
    _common(ask)
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--json", action="store_true", help="print the answer as one JSON object (same as --format json)")
    ask.add_argument("--format", choices=FORMATS, help="text (default), json, or markdown")
    ask.add_argument(
        "--server", metavar="URL", help="ask this running `rag serve` (default: the one serving --index, if any)"
    )
    ask.add_argument("--local", action="store_true", help="answer in this process even when a server is running")
    _collections(ask, scope=True)
    _no_sentence_scoring(ask)

    chat = commands.add_parser("chat", help="a conversation in the terminal, with citations and follow-ups")
    _common(chat)
    _collections(chat, scope=True)
    _no_sentence_scoring(chat)

    serve = commands.add_parser("serve", help="open the chat in the browser (builds the index if needed)")
    _common(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 7860)")
    serve.add_argument("--watch", action="store_true", help="rebuild when the corpus changes")
    serve.add_argument("--no-auth", action="store_true", help="allow a non-loopback address without accounts")
    _collections(serve)
    _ray_flag(serve, "answer from replicas on the Ray cluster at ADDRESS (`auto`: the one this machine joined)")
    serve.add_argument("--replicas", type=int, default=2, help="answering replicas with --ray (default 2)")
    serve.add_argument(
        "--api-port", type=int, default=8000, help="port of the replicas' HTTP API with --ray (default 8000)"
    )

    status = commands.add_parser("status", help="what the index holds and whether it is up to date")
    _common(status)
    status.add_argument("--json", action="store_true", help="print as JSON")
    _collections(status)

    watch = commands.add_parser("watch", help="rebuild incrementally whenever the corpus changes")
    _common(watch)
    _collections(watch)

    evaluation = commands.add_parser("eval", help="measure retrieval and quotes on a BEIR folder or SQuAD .json")
    _common(evaluation)
    evaluation.add_argument(
        "dataset", type=Path, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or SQuAD .json"
    )
    evaluation.add_argument("--split", default="test", help="BEIR qrels split (default test)")
    evaluation.add_argument("--limit", type=int, help="ask this many questions, sampled with --seed (default all)")
    evaluation.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default 0)")
    evaluation.add_argument("--json", action="store_true", help="print one JSON object, per-question records included")
    _no_sentence_scoring(evaluation)
    evaluation.add_argument(
        "--half",
        choices=("train", "held-out"),
        help="SQuAD: ask only the questions of one half of the articles (alternating in file order; "
        "the answer model was fitted on v2.0's train half)",
    )

    mcp = commands.add_parser("mcp", help="the MCP tools (ask, search, get_passage) over standard input and output")
    _common(mcp)
    _collections(mcp)
    admin.add_commands(commands)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with any flags on top."""
    return Settings.from_env(
        corpus=getattr(args, "corpus", None),
        index=getattr(args, "index", None),
        model=getattr(args, "model", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        sentence_scoring=False if getattr(args, "no_sentence_scoring", False) else None,
        ray_address=getattr(args, "ray", None),
    )


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from(args)
        return COMMANDS[args.command](args, settings)
    except RagError as error:
        print(f"rag: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def cmd_build(args, settings: Settings) -> int:
    if settings.ray_address:
        from rag.cluster.build import build_on_cluster as build
    else:
        from rag.build.indexer import build

    for collection, shelf in _shelves(args, settings):
        summary = build(shelf, full=args.full, progress=_stderr if args.verbose or settings.ray_address else None)
        named = f"{collection.name}: " if collection else ""
        print(
            json.dumps({**summary.to_dict(), "collection": collection and collection.name})
            if args.json
            else named + summary.line()
        )
        for source, reason in summary.skipped.items():
            if not args.json:
                print(f"  skipped {named}{source}: {reason}", file=sys.stderr)
    return 0


def _shelves(args, settings: Settings) -> list[tuple]:
    """(collection, its settings) for each collection named, or [(None, settings)] for RAG_CORPUS alone."""
    from rag.collections import resolve

    chosen = resolve(settings, getattr(args, "collection", None))
    return [(c, c.settings(settings)) for c in chosen] or [(None, settings)]


def cmd_ask(args, settings: Settings) -> int:
    from rag.serve import export

    result = ask_one(args, settings)
    fmt = "json" if args.json else (args.format or "text")
    if fmt == "json":
        print(json.dumps(result, ensure_ascii=False))
    elif fmt == "markdown":
        print(export.answer_markdown(result), end="")
    else:
        print(export.as_text(result))
    return 0


def ask_one(args, settings: Settings) -> dict:
    """The answer object, from a running server of this index when there is one, else computed here."""
    from rag.serve import client

    names = [flag.partition("=")[0] for flag in args.collection or []]
    url = args.server or (None if args.local or names else client.find_server(settings))
    if url:
        try:
            return client.ask_server(url, args.question, settings.api_key, names, args.only or "")
        except client.ServerUnavailable as error:
            if args.server:
                raise
            print(f"rag: {error}; answering here instead", file=sys.stderr)
    from rag.answer.quotes import answer
    from rag.search import Retriever, Scope

    retrievers = [Retriever(shelf, collection=c.name if c else None) for c, shelf in _shelves(args, settings)]
    return answer(args.question, retrievers, settings, scope=Scope.of(args.only)).to_dict()


def cmd_chat(args, settings: Settings) -> int:
    from rag.search import Retriever, Scope
    from rag.serve.terminal import chat

    retrievers = [Retriever(shelf, collection=c.name if c else None) for c, shelf in _shelves(args, settings)]
    return chat(settings, retriever=retrievers, scope=Scope.of(args.only))


def cmd_status(args, settings: Settings) -> int:
    from rag.build.status import index_status

    for collection, shelf in _shelves(args, settings):
        info = index_status(shelf)
        if collection:
            info = {"collection": collection.name, **info}
        _print_status(info, args.json)
    return 0


def _print_status(info: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            if key == "segments":
                print(f"segments: {len(value)}")
                for segment in value:
                    print(
                        f"  {segment['name']}: {segment['passages']:,} passages, {segment['deleted']:,} deleted, "
                        f"{segment['index_type']}, {segment['bytes']:,} bytes"
                    )
            else:
                print(f"{key}: {value:,}" if key in ("bytes_on_disk", "deleted") else f"{key}: {value}")


def cmd_serve(args, settings: Settings) -> int:
    if settings.ray_address:
        from rag.cluster.replicas import serve_replicated
        from rag.errors import ConfigError

        if args.watch:
            raise ConfigError(
                "--watch does not combine with --ray; run `rag build --ray` after changing the corpus "
                "(the replicas pick the new version up by themselves)"
            )
        if args.collection:
            raise ConfigError("collections are not served by Ray replicas; serve them without --ray")
        serve_replicated(settings, args.replicas, no_auth=args.no_auth, api_port=args.api_port)
        return 0
    from rag.collections import resolve
    from rag.serve.launch import serve

    serve(settings, watch=args.watch, no_auth=args.no_auth, collections=resolve(settings, args.collection))
    return 0


def cmd_watch(args, settings: Settings) -> int:
    from rag.build.watch import watch_all

    watch_all([(c.name if c else None, shelf) for c, shelf in _shelves(args, settings)], report=print)
    return 0


def cmd_eval(args, settings: Settings) -> int:
    from rag.eval.evaluate import evaluate

    report = evaluate(
        args.dataset,
        settings,
        split=args.split,
        limit=args.limit,
        seed=args.seed,
        progress=_stderr if args.verbose else None,
        half=args.half,
    )
    print(json.dumps(report.to_dict(), ensure_ascii=False) if args.json else report.table())
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def cmd_mcp(args, settings: Settings) -> int:
    from rag.collections import resolve
    from rag.serve.library import Access, Answerer, Library, LocalBackend
    from rag.serve.mcp_server import run_stdio

    library = Library.open(settings, resolve(settings, args.collection))
    run_stdio(Answerer(LocalBackend(settings, library), Access(library)))
    return 0


COMMANDS = {
    "build": cmd_build,
    "ask": cmd_ask,
    "chat": cmd_chat,
    "serve": cmd_serve,
    "status": cmd_status,
    "watch": cmd_watch,
    "eval": cmd_eval,
    "mcp": cmd_mcp,
    **admin.COMMANDS,
}

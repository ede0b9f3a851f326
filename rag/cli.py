"""The `rag` command: parse flags, call one library function, print, turn errors into clean exits."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rag.config import Settings
from rag.errors import RagError

EXIT_ERROR = 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, help="documents folder (env RAG_CORPUS, default seeds/)")
    parser.add_argument("--index", type=Path, help="index folder (env RAG_INDEX, default indexes/)")
    parser.add_argument("--model", help="sentence-transformers model name or folder (env RAG_MODEL)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each step")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rag",
        description="Ask questions of your documents; every answer is verbatim, cited quotes.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="build or update the index (only what changed is embedded)")
    _common(build)
    build.add_argument("--full", action="store_true", help="rebuild from nothing")
    build.add_argument("--json", action="store_true", help="print the summary as JSON")

    ask = commands.add_parser("ask", help="answer one question with cited quotes")
    _common(ask)
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    ask.add_argument("--no-rerank", action="store_true", help="skip sentence-level reranking")

    serve = commands.add_parser("serve", help="open the chat in the browser (builds the index if needed)")
    _common(serve)
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 7860)")
    serve.add_argument("--watch", action="store_true", help="rebuild when the corpus changes")
    serve.add_argument("--no-auth", action="store_true", help="allow a non-loopback address without a password")

    status = commands.add_parser("status", help="what the index holds and whether it is up to date")
    _common(status)
    status.add_argument("--json", action="store_true", help="print as JSON")

    watch = commands.add_parser("watch", help="rebuild incrementally whenever the corpus changes")
    _common(watch)

    evaluation = commands.add_parser("eval", help="measure retrieval and quotes on a BEIR folder or SQuAD .json")
    _common(evaluation)
    evaluation.add_argument("dataset", type=Path, help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/) or SQuAD .json")
    evaluation.add_argument("--split", default="test", help="BEIR qrels split (default test)")
    evaluation.add_argument("--limit", type=int, help="ask this many questions, sampled with --seed (default all)")
    evaluation.add_argument("--seed", type=int, default=0, help="seed of the --limit sample (default 0)")
    evaluation.add_argument("--json", action="store_true", help="print one JSON object, per-question records included")
    evaluation.add_argument("--no-rerank", action="store_true", help="skip sentence-level reranking")

    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with any flags on top."""
    return Settings.from_env(
        corpus=args.corpus,
        index=args.index,
        model=args.model,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        rerank=False if getattr(args, "no_rerank", False) else None,
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
    from rag.indexer import build

    summary = build(settings, full=args.full, progress=_stderr if args.verbose else None)
    print(json.dumps(summary.to_dict()) if args.json else summary.line())
    for source, reason in summary.skipped.items():
        if not args.json:
            print(f"  skipped {source}: {reason}", file=sys.stderr)
    return 0


def cmd_ask(args, settings: Settings) -> int:
    from rag.answer import answer
    from rag.retrieve import Retriever

    result = answer(args.question, Retriever(settings), settings)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return 0
    print(result.text)
    if result.citations:
        print()
        for c in result.citations:
            where = c.where() or ("" if c.section else f"lines {c.line_start}–{c.line_end}")
            where = ", ".join(part for part in (where, f"§ {c.section}" if c.section else "") if part)
            print(f"[{c.n}] {c.source}, {where} (chars {c.start}–{c.end}, passage {c.passage_id})")
    return 0


def cmd_status(args, settings: Settings) -> int:
    from rag.status import index_status

    info = index_status(settings)
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return 0


def cmd_serve(args, settings: Settings) -> int:
    from rag.app import serve

    serve(settings, watch=args.watch, no_auth=args.no_auth)
    return 0


def cmd_watch(args, settings: Settings) -> int:
    from rag.watch import watch_forever

    watch_forever(settings, report=print)
    return 0


def cmd_eval(args, settings: Settings) -> int:
    from rag.evaluate import evaluate

    report = evaluate(
        args.dataset, settings, split=args.split, limit=args.limit, seed=args.seed,
        progress=_stderr if args.verbose else None,
    )
    print(json.dumps(report.to_dict(), ensure_ascii=False) if args.json else report.table())
    return 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


COMMANDS = {"build": cmd_build, "ask": cmd_ask, "serve": cmd_serve, "status": cmd_status, "watch": cmd_watch, "eval": cmd_eval}

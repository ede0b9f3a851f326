"""The commands of a shared server's administrator: `rag user` (accounts and API keys), `rag group` and
`rag audit`. Each parses its flags, calls rag.serve.accounts or rag.serve.audit, and prints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rag.config import Settings


def add_commands(commands) -> None:
    """`rag user`, `rag group` and `rag audit` on the subcommands of the `rag` parser."""
    user = commands.add_parser("user", help="accounts of a shared server: add, remove, list, passwd, key, import")
    user.add_argument("--index", type=Path, help="index folder (env RAG_INDEX); the accounts are RAG_ACCOUNTS")
    user.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create an account (the password from standard input, or asked for)")
    add.add_argument("name")
    add.add_argument("--role", choices=("reader", "editor", "admin"), default="reader", help="default reader")
    add.add_argument("--collections", default="", help="collections the user may use, comma-separated (* for all)")
    add.add_argument("--groups", default="", help="groups the user belongs to, comma-separated")
    for action, text in (
        ("remove", "remove an account"),
        ("passwd", "set a new password"),
        ("key", "make an API key (shown once)"),
        ("revoke", "remove every API key of an account"),
    ):
        actions.add_parser(action, help=text).add_argument("name")
    actions.add_parser("list", help="the accounts, without their secrets").add_argument("--json", action="store_true")
    imported = actions.add_parser("import", help="hash a file of plain-text user:password lines into accounts")
    imported.add_argument("file", type=Path)
    imported.add_argument("--role", choices=("reader", "editor", "admin"), default="reader")
    imported.add_argument("--collections", default="", help="collections the imported users may use")
    group = commands.add_parser("group", help="a group of users and the collections it may use")
    group.add_argument("--index", type=Path, help="index folder (env RAG_INDEX)")
    group.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    group.add_argument("name")
    group.add_argument("--collections", default="", help="the group's collections, comma-separated (empty: remove it)")
    audit = commands.add_parser("audit", help="print the audit log of a shared server, filtered")
    audit.add_argument("--index", type=Path, help="index folder (env RAG_INDEX); the log is RAG_AUDIT")
    audit.add_argument("-v", "--verbose", action="store_true", help=argparse.SUPPRESS)
    audit.add_argument("--user", default="", help="only this user's events")
    audit.add_argument("--collection", default="", help="only events of this collection")
    audit.add_argument("--since", default="", help="from this time on (ISO: 2026-12-05 or 2026-12-05T10:00)")
    audit.add_argument("--until", default="", help="up to this time (ISO)")
    audit.add_argument("--json", action="store_true", help="print the events as JSON lines")


def cmd_user(args, settings: Settings) -> int:
    from rag.serve import accounts

    path = accounts.accounts_path(settings.index, settings.accounts)
    if args.action == "add":
        accounts.add_user(path, args.name, args.role, _names(args.collections), _names(args.groups), _password())
        print(f"added {args.name} ({args.role}) to {path}")
    elif args.action == "remove":
        accounts.remove_user(path, args.name)
        print(f"removed {args.name}; their sessions and keys no longer work")
    elif args.action == "passwd":
        accounts.set_password(path, args.name, _password())
        print(f"new password for {args.name}; their other sessions have ended")
    elif args.action == "key":
        print(accounts.make_key(path, args.name))
        print("this key is shown once; send it as `Authorization: Bearer KEY` (or set RAG_API_KEY)", file=sys.stderr)
    elif args.action == "revoke":
        print(f"removed {accounts.revoke_keys(path, args.name)} API keys of {args.name}")
    elif args.action == "import":
        names = accounts.import_plain(path, args.file, args.role, _names(args.collections))
        print(f"imported {len(names)} accounts into {path}, passwords hashed; now delete {args.file}")
    else:
        for row in accounts.listing(path):
            print(
                json.dumps(row)
                if args.json
                else f"{row['user']}: {row['role']}; collections {', '.join(row['collections']) or '-'}; "
                f"groups {', '.join(row['groups']) or '-'}; {row['keys']} API keys"
            )
    return 0


def cmd_group(args, settings: Settings) -> int:
    from rag.serve import accounts

    path = accounts.accounts_path(settings.index, settings.accounts)
    accounts.set_group(path, args.name, _names(args.collections))
    print(f"group {args.name}: {args.collections or 'removed'}")
    return 0


def cmd_audit(args, settings: Settings) -> int:
    from rag.serve import audit

    path = Path(settings.audit) if settings.audit else Path(settings.index) / audit.FILE
    for event in audit.read(path, args.user, args.collection, args.since, args.until):
        if args.json:
            print(json.dumps(event, ensure_ascii=False))
        else:
            facts = ", ".join(f"{k} {v}" for k, v in event.items() if k not in ("time", "event", "user"))
            print(
                f"{event.get('time')} {event.get('user') or '-'} {event.get('event')}" + (f": {facts}" if facts else "")
            )
    return 0


def _names(text: str) -> list[str]:
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def _password() -> str:
    """A password from standard input when it is not a terminal (for scripts), else asked for twice."""
    import getpass

    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        from rag.errors import ConfigError

        raise ConfigError("the two passwords differ; run the command again")
    return first


COMMANDS = {"user": cmd_user, "group": cmd_group, "audit": cmd_audit}

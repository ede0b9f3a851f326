"""Collections: several named corpora served by one server, each its own folder and its own index.

`--collection hr=/srv/hr` names a collection and its folder and records it in the collections file
(`<index>/collections.json`, or RAG_COLLECTIONS_FILE), so that `--collection hr` finds it later:

    {"collections": {"hr": {"corpus": "/srv/hr"},
                     "eng": {"corpus": "/srv/eng", "index": "/fast-disk/rag/eng"}}}

A collection's index is `<index>/<name>/` unless the file names another place. With no collection named,
rag works on RAG_CORPUS → RAG_INDEX alone, as it always has.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.errors import ConfigError

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
"""A collection's name: lower-case letters, digits, `-` and `_`, at most 40, so that it is a safe folder name."""
CONFIG = "collections.json"


@dataclass(frozen=True)
class Collection:
    """One named corpus and where its index lives."""

    name: str
    corpus: Path
    index: Path

    def settings(self, settings: Settings) -> Settings:
        """`settings` with this collection's folder and index."""
        return settings.replace(corpus=self.corpus, index=self.index)


def check_name(name: str) -> str:
    """The name itself when it is a valid collection name, else ConfigError saying what a name may hold."""
    if not NAME.match(name or ""):
        raise ConfigError(
            f"{name!r} is not a collection name: use lower-case letters, digits, '-' and '_' (at most 40, "
            "starting with a letter or digit), e.g. --collection hr=/srv/hr"
        )
    return name


def config_path(settings: Settings) -> Path:
    """Where the collections are recorded."""
    return Path(settings.collections_file) if settings.collections_file else Path(settings.index) / CONFIG


def configured(settings: Settings) -> dict[str, Collection]:
    """Every collection the collections file records, by name ({} when there is no file)."""
    path = config_path(settings)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))["collections"]
        found = {}
        for name, place in raw.items():
            index = Path(place["index"]) if place.get("index") else Path(settings.index) / check_name(name)
            found[name] = Collection(name, Path(place["corpus"]), index)
        return found
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(
            f"the collections file {path} is damaged ({error}); fix it as the README shows, or delete it and "
            "name the collections again with --collection NAME=DIR"
        ) from None


def resolve(settings: Settings, flags: list[str] | None) -> list[Collection]:
    """The collections `--collection` flags name: `NAME=DIR` names (and records) a collection, `NAME` one already
    recorded. [] when none is named: the command works on RAG_CORPUS alone."""
    if not flags:
        return []
    known, chosen, changed = configured(settings), [], False
    for flag in flags:
        name, sep, folder = flag.partition("=")
        name = check_name(name.strip())
        if sep:
            corpus = Path(folder.strip()).expanduser()
            if not folder.strip():
                raise ConfigError(
                    f"--collection {flag}: name the folder after '=', e.g. --collection {name}=/srv/{name}"
                )
            index = known[name].index if name in known else Path(settings.index) / name
            if name not in known or known[name].corpus.resolve() != corpus.resolve():
                known[name], changed = Collection(name, corpus, index), True
        elif name not in known:
            raise ConfigError(
                f"no collection {name!r} in {config_path(settings)}; name its folder once: --collection {name}=DIR"
            )
        if name not in {c.name for c in chosen}:
            chosen.append(known[name])
    if changed:
        _write(settings, known)
    return chosen


def _write(settings: Settings, collections: dict[str, Collection]) -> None:
    """Record the collections (atomically), each index written only when it is not the default place."""
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        name: {"corpus": str(c.corpus), **({"index": str(c.index)} if c.index != Path(settings.index) / name else {})}
        for name, c in sorted(collections.items())
    }
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(json.dumps({"collections": record}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)

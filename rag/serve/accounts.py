"""Accounts: who may log in, with which role, to which collections; their passwords and API keys, hashed.

The accounts file (RAG_ACCOUNTS, default `<index>/accounts.json`, mode 0600) is JSON written atomically under a
lock. Passwords are salted scrypt hashes (standard library `hashlib.scrypt`, n=2^14, r=8, p=1); API keys are random
and stored as their sha256. Nothing is ever stored in plain text. Roles: a *reader* asks; an *editor* also uploads,
deletes and rebuilds in the collections they may edit; an *admin* also manages accounts and may use every
collection. A user reaches the collections named on their account and those of their groups ("*" is every one).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ConfigError

ROLES = ("reader", "editor", "admin")
FILE = "accounts.json"
EVERY = "*"
"""In a list of collections: every collection, those added later included."""
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
"""scrypt's cost: about 50 ms and 16 MB a log-in, so a stolen file costs the same to each guess."""
MIN_PASSWORD = 8
KEY_PREFIX = "rag_"


def hash_password(password: str) -> str:
    """A salted scrypt hash: `scrypt$n$r$p$salt$hash` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, maxmem=64 * 2**20, **SCRYPT)
    encoded = (base64.b64encode(part).decode("ascii") for part in (salt, digest))
    return "scrypt${n}${r}${p}$".format(**SCRYPT) + "$".join(encoded)


def check_password(stored: str, password: str) -> bool:
    """Whether `password` is the one `stored` was made from (in constant time)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        found = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 2**20,
        )
    except (ValueError, TypeError):
        return False
    return kind == "scrypt" and hmac.compare_digest(found, expected)


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass
class User:
    """One account as stored."""

    name: str
    password: str
    role: str = "reader"
    collections: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    keys: dict[str, dict] = field(default_factory=dict)
    """key id → {"hash": sha256 of the key, "created": ISO time}."""

    def fingerprint(self) -> str:
        """Changes whenever the password or the account's rights change: sessions made before are no longer valid."""
        facts = json.dumps([self.password, self.role, sorted(self.collections), sorted(self.groups)])
        return hashlib.sha256(facts.encode("utf-8")).hexdigest()[:16]


@dataclass
class Accounts:
    """The accounts file, read whole."""

    path: Path
    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def collections_of(self, name: str, known: list[str]) -> list[str]:
        """The collections of `known` the user may read, in `known`'s order ([] for an unknown user)."""
        user = self.users.get(name)
        if user is None:
            return []
        allowed = set(user.collections) | {c for g in user.groups for c in self.groups.get(g, [])}
        if user.role == "admin" or EVERY in allowed:
            return list(known)
        return [c for c in known if c in allowed]

    def may_edit(self, name: str, collection: str, known: list[str]) -> bool:
        """Editors and admins may upload, delete and rebuild in the collections they may read."""
        user = self.users.get(name)
        return user is not None and user.role in ("editor", "admin") and collection in self.collections_of(name, known)

    def check(self, name: str, password: str) -> User | None:
        """The user when the password is theirs, else None (a made-up name costs as much as a real one)."""
        user = self.users.get(name)
        stored = user.password if user is not None else _DECOY
        return user if check_password(stored, password) and user is not None else None

    def by_key(self, key: str) -> User | None:
        """The user an API key belongs to, or None."""
        if not key.startswith(KEY_PREFIX) or key.count("_") < 2:
            return None
        key_id = key.split("_")[1]
        digest = key_digest(key)
        for user in self.users.values():
            entry = user.keys.get(key_id)
            if entry is not None and hmac.compare_digest(entry["hash"], digest):
                return user
        return None


_DECOY = hash_password(secrets.token_urlsafe(16))
"""A hash to check wrong names against, so that an unknown name takes as long as a wrong password."""


def accounts_path(index: Path, setting: str = "") -> Path:
    """Where the accounts file is: RAG_ACCOUNTS, else `<index>/accounts.json`."""
    return Path(setting).expanduser() if setting else Path(index) / FILE


def load(path: Path) -> Accounts | None:
    """The accounts file, or None when there is none (a server of one user on loopback)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(
            f"cannot read the accounts file {path} ({error.strerror or error}); fix its permissions"
        ) from None
    try:
        raw = json.loads(text)
        users = {name: User(name=name, **entry) for name, entry in raw.get("users", {}).items()}
        return Accounts(Path(path), users, {g: list(c) for g, c in raw.get("groups", {}).items()})
    except (ValueError, TypeError, AttributeError) as error:
        if any(":" in line for line in text.splitlines() if line.strip() and not line.startswith("#")):
            raise ConfigError(
                f"{path} holds plain-text `user:password` lines, which rag no longer reads; convert them with "
                f"`rag user import {path} --role reader` (it hashes each password), then delete the old file"
            ) from None
        raise ConfigError(f"the accounts file {path} is damaged ({error}); restore it or remove it") from None


@contextmanager
def editing(path: Path):
    """The accounts file, locked against other writers, saved atomically (0600) when the block ends cleanly."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        accounts = load(path) or Accounts(path)
        yield accounts
        _save(accounts)


def _save(accounts: Accounts) -> None:
    record = {
        "users": {
            name: {
                "password": u.password,
                "role": u.role,
                "collections": u.collections,
                "groups": u.groups,
                "keys": u.keys,
            }
            for name, u in sorted(accounts.users.items())
        },
        "groups": dict(sorted(accounts.groups.items())),
    }
    tmp = accounts.path.with_name(f".{accounts.path.name}.{uuid.uuid4().hex[:8]}")
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, accounts.path)


def check_user_name(name: str) -> str:
    if not USER_NAME.match(name or ""):
        raise ConfigError(f"{name!r} is not a user name: use letters, digits, '.', '_', '@' and '-' (at most 64)")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def check_new_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    return password


def new_key(user: User) -> str:
    """A new API key for `user` (returned once, stored as its sha256): `rag_<id>_<secret>`."""
    key_id = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
    user.keys[key_id] = {"hash": key_digest(key), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return key


def add_user(path: Path, name: str, role: str, collections: list[str], groups: list[str], password: str) -> None:
    """Create an account (ConfigError when the name is taken)."""
    check_user_name(name), check_role(role), check_new_password(password)
    with editing(path) as accounts:
        if name in accounts.users:
            raise ConfigError(f"user {name!r} exists already; `rag user passwd {name}` changes the password")
        accounts.users[name] = User(name, hash_password(password), role, list(collections), list(groups))


def _existing(accounts: Accounts, name: str) -> User:
    if name not in accounts.users:
        raise ConfigError(f"no user {name!r} in {accounts.path}; `rag user list` shows the accounts")
    return accounts.users[name]


def remove_user(path: Path, name: str) -> None:
    """Remove an account; its sessions and keys stop working at once."""
    with editing(path) as accounts:
        _existing(accounts, name)
        del accounts.users[name]


def set_password(path: Path, name: str, password: str) -> None:
    """A new password; sessions made with the old one end."""
    check_new_password(password)
    with editing(path) as accounts:
        _existing(accounts, name).password = hash_password(password)


def make_key(path: Path, name: str) -> str:
    """A new API key for an account, shown once."""
    with editing(path) as accounts:
        return new_key(_existing(accounts, name))


def revoke_keys(path: Path, name: str) -> int:
    """Remove every API key of an account; how many there were."""
    with editing(path) as accounts:
        user = _existing(accounts, name)
        count, user.keys = len(user.keys), {}
        return count


def set_group(path: Path, name: str, collections: list[str]) -> None:
    """Define (or redefine) a group by the collections its members may use; an empty list removes it."""
    check_user_name(name)
    with editing(path) as accounts:
        if collections:
            accounts.groups[name] = list(collections)
        else:
            accounts.groups.pop(name, None)


def listing(path: Path) -> list[dict]:
    """The accounts without their secrets: name, role, collections, groups, number of API keys."""
    accounts = load(path) or Accounts(Path(path))
    return [
        {"user": u.name, "role": u.role, "collections": u.collections, "groups": u.groups, "keys": len(u.keys)}
        for u in sorted(accounts.users.values(), key=lambda u: u.name)
    ]


def import_plain(path: Path, plain: Path, role: str, collections: list[str]) -> list[str]:
    """Hash the accounts of a file of plain-text `user:password` lines (the former RAG_AUTH_FILE) into the
    accounts file; the names imported. The plain file is left for you to delete."""
    check_role(role)
    try:
        lines = Path(plain).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {plain} ({error}); name a UTF-8 file of `user:password` lines") from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.strip().startswith("#"):
            continue
        name, sep, password = line.strip().partition(":")
        if not sep or not name.strip() or not password:
            raise ConfigError(f"line {number} of {plain} is not `user:password`")
        pairs.append((check_user_name(name.strip()), password))
    with editing(path) as accounts:
        for name, password in pairs:
            accounts.users[name] = User(name, hash_password(password), role, list(collections), [])
    return [name for name, _ in pairs]

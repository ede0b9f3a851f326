"""Whether `rag serve` asks for a log-in: once an accounts file exists, on every surface; without one only on
loopback, unless --no-auth. Plain-text passwords (the former RAG_AUTH, RAG_AUTH_FILE) are refused."""

from __future__ import annotations

from rag.config import Settings, is_loopback
from rag.errors import ConfigError
from rag.serve.accounts import accounts_path, load
from rag.serve.login import AccountsFile


def accounts_file(settings: Settings, no_auth: bool = False) -> AccountsFile | None:
    """The accounts file to check log-ins against, or None; refuses plain-text passwords and a network-facing
    server without accounts (unless `no_auth`)."""
    if settings.auth.strip() or settings.auth_file.strip():
        source = f"RAG_AUTH_FILE={settings.auth_file}" if settings.auth_file.strip() else "RAG_AUTH"
        convert = f"`rag user import {settings.auth_file}`" if settings.auth_file.strip() else "`rag user add NAME`"
        raise ConfigError(
            f"{source} holds passwords in plain text, which rag no longer reads; create hashed accounts with "
            f"{convert} (it asks for or reads each password and stores only a salted hash), then unset it"
        )
    path = accounts_path(settings.index, settings.accounts)
    if load(path) is not None:
        return AccountsFile(path)
    if is_loopback(settings.host) or no_auth:
        return None
    raise ConfigError(
        f"binding {settings.host} opens the chat to the network; create an account first with "
        f"`rag user add NAME --role admin` (accounts in {path}), or pass --no-auth if that is really what you want"
    )

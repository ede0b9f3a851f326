"""Who may use the chat: the accounts of RAG_AUTH / RAG_AUTH_FILE, required before the server leaves loopback."""

from __future__ import annotations

from pathlib import Path

from rag.config import Settings, is_loopback
from rag.errors import ConfigError


def credentials(settings: Settings, no_auth: bool = False) -> list[tuple[str, str]] | None:
    """Accounts the chat asks for, or None; refuses a network-facing server without any."""
    accounts = [_account(settings.auth, "RAG_AUTH")] if settings.auth.strip() else []
    if settings.auth_file:
        from_file = _accounts_in_file(Path(settings.auth_file))
        if not from_file:
            raise ConfigError(
                f"RAG_AUTH_FILE {settings.auth_file} holds no account; add `user:password` lines or unset it"
            )
        accounts += from_file
    if accounts or is_loopback(settings.host) or no_auth:
        return accounts or None
    raise ConfigError(
        f"binding {settings.host} opens the chat to the network; set RAG_AUTH=user:password or "
        f"RAG_AUTH_FILE=path, or pass --no-auth if that is really what you want"
    )


def _accounts_in_file(path: Path) -> list[tuple[str, str]]:
    """The `user:password` lines of an account file; blank lines and `#` comments are passed over."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ConfigError(f"cannot read RAG_AUTH_FILE {path} ({error.strerror or error}); fix the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"RAG_AUTH_FILE {path} is not UTF-8 text; save it as UTF-8") from None
    return [
        _account(line, f"line {number} of RAG_AUTH_FILE {path}")
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.strip().startswith("#")
    ]


def _account(line: str, where: str) -> tuple[str, str]:
    """(user, password) from `user:password`; the message names the place, never the password."""
    user, sep, password = line.strip().partition(":")
    if not sep or not user.strip() or not password:
        raise ConfigError(f"{where} is not an account: write it as `user:password` (the password may hold `:`)")
    return user.strip(), password

"""API keys: made once, configured as hashes, compared in constant time.

A key is ``inferd_`` and 43 URL-safe characters (32 random bytes). The server keeps only
its SHA-256, in an entry ``NAME:SCOPE:HASH`` (settings ``server.api_keys``, the
``INFERENCE_SERVER__API_KEYS`` variable, or one entry a line in ``server.api_keys_file``).
The key's name is what logs and rate limits see; the key itself is never logged.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from inferd.errors import ConfigError

PREFIX: Final = "inferd_"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_HASH: Final = re.compile(r"[0-9a-f]{64}")
#: The admin key ``server.admin_token`` stands for (see :func:`admin_token_entry`).
ADMIN_TOKEN_NAME: Final = "admin-token"


class Scope(enum.Enum):
    INFER = "infer"  # inference, metadata, streams
    ADMIN = "admin"  # the control API, and everything ``infer`` may do


#: What a key of each scope may do.
GRANTS: Final[dict[Scope, frozenset[Scope]]] = {
    Scope.INFER: frozenset({Scope.INFER}),
    Scope.ADMIN: frozenset({Scope.INFER, Scope.ADMIN}),
}


@dataclasses.dataclass(frozen=True, slots=True)
class KeyEntry:
    name: str
    scope: Scope
    digest: bytes  # SHA-256 of the key

    def line(self) -> str:
        return f"{self.name}:{self.scope.value}:{self.digest.hex()}"


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def new_key(name: str, scope: Scope) -> tuple[str, KeyEntry]:
    """A fresh key and the entry that configures it."""
    check_name(name)
    key = PREFIX + secrets.token_urlsafe(32)
    return key, KeyEntry(name, scope, digest(key))


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigError(f"key name {name[:64]!r}: expected 1-64 letters, digits, '.', '_' or '-'")


def parse_entry(text: str, where: str) -> KeyEntry:
    """``NAME:SCOPE:HASH`` (the hash as 64 hex digits) -> an entry; ``where`` names the
    setting or file line for the message."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ConfigError(f"{where}: expected NAME:SCOPE:SHA256 (see 'inferd keys new')")
    name, scope, hexdigest = parts
    try:
        check_name(name)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    scopes = {s.value: s for s in Scope}
    if scope not in scopes:
        raise ConfigError(f"{where}: scope {scope[:16]!r} is not one of {sorted(scopes)}")
    if not _HASH.fullmatch(hexdigest):
        raise ConfigError(
            f"{where}: the hash must be 64 lower-case hex digits (a SHA-256, not the key)"
        )
    return KeyEntry(name, scopes[scope], bytes.fromhex(hexdigest))


def read_keys_file(path: Path) -> list[KeyEntry]:
    """One entry a line; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"server.api_keys_file {path}: {exc.strerror or exc}") from exc
    return [
        parse_entry(line, f"{path} line {number}")
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def admin_token_entry(token: str) -> KeyEntry:
    """``server.admin_token`` is an admin key named :data:`ADMIN_TOKEN_NAME`."""
    return KeyEntry(ADMIN_TOKEN_NAME, Scope.ADMIN, digest(token))


class KeyRing:
    """The configured keys; :meth:`find` compares a presented key with every one."""

    def __init__(self, entries: Iterable[KeyEntry]) -> None:
        self._entries = tuple(entries)
        names = [e.name for e in self._entries]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ConfigError(f"server.api_keys: the key name {duplicate!r} is used twice")

    def __bool__(self) -> bool:
        return bool(self._entries)

    def has_scope(self, scope: Scope) -> bool:
        return any(scope in GRANTS[e.scope] for e in self._entries)

    def find(self, key: str) -> KeyEntry | None:
        """The entry of ``key``, or None. Every entry is compared (in constant time), so
        the time taken says nothing about which, if any, matched."""
        presented = digest(key)
        found = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest):
                found = entry
        return found

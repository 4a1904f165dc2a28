"""API keys: made once, configured as hashes, found by comparing every one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inferd.errors import ConfigError
from inferd.gateway.keys import (
    ADMIN_TOKEN_NAME,
    KeyRing,
    Scope,
    admin_token_entry,
    new_key,
    parse_entry,
    read_keys_file,
)


def test_a_new_key_round_trips_through_its_line() -> None:
    key, entry = new_key("ci-bot", Scope.INFER)
    assert key.startswith("inferd_") and len(key) == len("inferd_") + 43
    assert key not in entry.line()
    parsed = parse_entry(entry.line(), "here")
    assert parsed == entry
    ring = KeyRing([parse_entry(new_key("other", Scope.ADMIN)[1].line(), "x"), parsed])
    assert ring.find(key) == entry
    assert ring.find(key + "x") is None
    assert ring.has_scope(Scope.ADMIN) and ring.has_scope(Scope.INFER)


def test_two_keys_are_never_the_same() -> None:
    assert new_key("a", Scope.INFER)[0] != new_key("a", Scope.INFER)[0]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("ci:infer", "expected NAME:SCOPE:SHA256"),
        ("ci:root:" + "0" * 64, "scope 'root' is not one of ['admin', 'infer']"),
        ("ci:infer:inferd_abc", "64 lower-case hex digits"),
        ("bad name:infer:" + "0" * 64, "key name 'bad name'"),
        (":infer:" + "0" * 64, "key name ''"),
    ],
)
def test_a_bad_entry_names_the_problem(line: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_entry(line, "server.api_keys[0]")
    assert caught.value.message.startswith("server.api_keys[0]: ")
    assert fragment in caught.value.message


def test_the_keys_file_skips_comments_and_names_the_bad_line(tmp_path: Path) -> None:
    _, entry = new_key("ops", Scope.ADMIN)
    path = tmp_path / "keys"
    path.write_text(f"# operators\n\n{entry.line()}\n")
    assert read_keys_file(path) == [entry]
    path.write_text(f"{entry.line()}\nnot a key\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path} line 2: expected NAME:SCOPE:SHA256")):
        read_keys_file(path)
    with pytest.raises(ConfigError, match=r"server\.api_keys_file .*missing"):
        read_keys_file(tmp_path / "missing")


def test_a_name_used_twice_is_refused() -> None:
    first, second = new_key("app", Scope.INFER)[1], new_key("app", Scope.ADMIN)[1]
    with pytest.raises(ConfigError, match="the key name 'app' is used twice"):
        KeyRing([first, second])


def test_the_admin_token_is_an_admin_key() -> None:
    entry = admin_token_entry("s3cret")
    assert (entry.name, entry.scope) == (ADMIN_TOKEN_NAME, Scope.ADMIN)
    assert KeyRing([entry]).find("s3cret") == entry

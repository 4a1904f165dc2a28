"""The gateway's table: what each operation needs, for each kind of caller."""

from __future__ import annotations

from typing import Any

import pytest

from inferd.errors import InferdError, PermissionDenied, ResourceExhausted, Unauthenticated
from inferd.gateway.admission import ADMIN_OFF, NEED_KEY, Gateway, bearer
from inferd.gateway.keys import Scope, new_key
from inferd.gateway.operations import Operation
from inferd.gateway.ratelimit import limiter_for
from inferd.settings import RateLimitSettings, ServerSettings, StorageSettings

ADMIN_KEY, ADMIN = new_key("ops", Scope.ADMIN)
INFER_KEY, INFER = new_key("app", Scope.INFER)
KEYS = {"api_keys": [ADMIN.line(), INFER.line()]}
OK = None
ALL = list(Operation)


async def outcome(
    settings: dict[str, Any], key: str | None, address: str = "127.0.0.1"
) -> list[Any]:
    """Per operation (in ALL's order): None when admitted, else the error class."""
    gateway = Gateway(ServerSettings(**settings))
    principal = gateway.principal(key, address)
    results: list[Any] = []
    for operation in ALL:
        try:
            await gateway.admit(principal, operation, "tiny")
        except InferdError as exc:
            results.append(type(exc))
        else:
            results.append(OK)
    return results


#                 HEALTH METRICS METADATA INFER STREAM ADMIN STATIC (the dashboard's files)
DENIED, UNAUTH = PermissionDenied, Unauthenticated


@pytest.mark.parametrize(
    ("settings", "key", "address", "expected"),
    [
        # No key configured: inference open, the control API off, from loopback too.
        ({}, None, "127.0.0.1", [OK, OK, OK, OK, OK, DENIED, OK]),
        ({}, None, "127.0.0.6", [OK, OK, OK, OK, OK, DENIED, OK]),
        ({}, None, "10.0.0.1", [OK, OK, OK, OK, OK, DENIED, OK]),
        # Unless loopback admin is asked for explicitly.
        ({"allow_local_admin": True}, None, "127.0.0.6", [OK, OK, OK, OK, OK, OK, OK]),
        ({"allow_local_admin": True}, None, "10.0.0.1", [OK, OK, OK, OK, OK, DENIED, OK]),
        # Keys configured.
        (KEYS, None, "127.0.0.1", [OK, OK, OK, OK, OK, UNAUTH, OK]),
        (KEYS, "wrong", "127.0.0.1", [OK, UNAUTH, UNAUTH, UNAUTH, UNAUTH, UNAUTH, OK]),
        (KEYS, INFER_KEY, "127.0.0.1", [OK, OK, OK, OK, OK, DENIED, OK]),
        (KEYS, ADMIN_KEY, "10.0.0.1", [OK, OK, OK, OK, OK, OK, OK]),
        # Closed inference and keyed metrics.
        (
            {**KEYS, "require_api_key": True},
            None,
            "::1",
            [OK, OK, UNAUTH, UNAUTH, UNAUTH, UNAUTH, OK],
        ),
        ({**KEYS, "metrics_require_key": True}, None, "::1", [OK, UNAUTH, OK, OK, OK, UNAUTH, OK]),
        ({**KEYS, "require_api_key": True}, INFER_KEY, "::1", [OK, OK, OK, OK, OK, DENIED, OK]),
    ],
)
async def test_rules(
    settings: dict[str, Any], key: str | None, address: str, expected: list[Any]
) -> None:
    assert await outcome(settings, key, address) == expected


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({}, None),
        (KEYS, None),
        (KEYS, INFER_KEY),
        (KEYS, ADMIN_KEY),
        (KEYS, "wrong"),
        ({**KEYS, "require_api_key": True, "metrics_require_key": True}, None),
    ],
)
async def test_allows_agrees_with_admit_and_counts_nothing(
    settings: dict[str, Any], key: str | None
) -> None:
    limiter = limiter_for(RateLimitSettings(enabled=True, requests_per_minute=1), StorageSettings())
    gateway = Gateway(ServerSettings(**settings), limiter)
    principal = gateway.principal(key, "10.0.0.1")
    allowed = [gateway.allows(principal, operation) for operation in ALL for _ in range(3)]
    admitted = [result is OK for result in await outcome(settings, key, "10.0.0.1")]
    assert allowed == [a for a in admitted for _ in range(3)]
    if gateway.allows(principal, Operation.INFER):
        await gateway.admit(principal, Operation.INFER)  # the budget of one is still whole


async def test_messages_say_what_to_do() -> None:
    gateway = Gateway(ServerSettings())
    with pytest.raises(PermissionDenied) as off:
        await gateway.admit(gateway.principal(None, "127.0.0.1"), Operation.ADMIN)
    assert off.value.message == ADMIN_OFF
    keyed = Gateway(ServerSettings(**KEYS, require_api_key=True))
    with pytest.raises(Unauthenticated) as missing:
        await keyed.admit(keyed.principal(None, "10.0.0.1"), Operation.INFER)
    assert missing.value.message == NEED_KEY
    with pytest.raises(PermissionDenied) as scope:
        await keyed.admit(keyed.principal(INFER_KEY, "10.0.0.1"), Operation.ADMIN)
    assert scope.value.message == "the key 'app' has scope 'infer'; this needs 'admin'"
    assert INFER_KEY not in scope.value.message


async def test_the_rate_limit_counts_a_key_across_addresses_and_spares_probes() -> None:
    limiter = limiter_for(RateLimitSettings(enabled=True, requests_per_minute=2), StorageSettings())
    gateway = Gateway(ServerSettings(**KEYS), limiter)
    for address in ("10.0.0.1", "10.0.0.2"):
        await gateway.admit(gateway.principal(INFER_KEY, address), Operation.INFER)
    with pytest.raises(ResourceExhausted):
        await gateway.admit(gateway.principal(INFER_KEY, "10.0.0.3"), Operation.METADATA)
    for operation in (Operation.HEALTH, Operation.METRICS):
        await gateway.admit(gateway.principal(INFER_KEY, "10.0.0.3"), operation)
    await gateway.admit(gateway.principal(None, "10.0.0.3"), Operation.INFER)  # its own budget


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        (None, None),
    ],
)
def test_bearer(header: str | None, key: str | None) -> None:
    assert bearer(header) == key

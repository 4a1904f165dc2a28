"""The gateway: who is calling (a :class:`Principal`) and whether they may do what they ask.

Protocol-neutral: the HTTP front and the gRPC edge's wrapper each read the caller's key and
address, then call :meth:`Gateway.admit` with the request's
:class:`~inferd.gateway.operations.Operation`. :data:`RULES` says what each operation
needs; every refusal raises from the core's error tree (401 / UNAUTHENTICATED for a missing
or unknown key, 403 / PERMISSION_DENIED for a key without the scope or a control API with
no admin key configured, 429 / RESOURCE_EXHAUSTED past the rate limit).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Awaitable
from typing import Final

from inferd.errors import PermissionDenied, Unauthenticated
from inferd.gateway import keys
from inferd.gateway.keys import GRANTS, KeyEntry, KeyRing, Scope
from inferd.gateway.operations import Operation
from inferd.gateway.principal import TrustedProxies
from inferd.gateway.ratelimit import RateLimiter
from inferd.settings import ServerSettings


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What an operation needs: a key granting ``scope`` (None: nothing at all); for a
    caller with no key, ``closed_by`` is the ``server`` setting that, when true, requires
    the key (None: a key is always required); and whether it counts against the rate
    limit."""

    scope: Scope | None
    closed_by: str | None
    limited: bool


#: What each operation needs.
RULES: Final[dict[Operation, Rule]] = {
    Operation.HEALTH: Rule(None, None, limited=False),
    Operation.METRICS: Rule(Scope.INFER, "metrics_require_key", limited=False),
    Operation.METADATA: Rule(Scope.INFER, "require_api_key", limited=True),
    Operation.INFER: Rule(Scope.INFER, "require_api_key", limited=True),
    Operation.STREAM: Rule(Scope.INFER, "require_api_key", limited=True),
    Operation.ADMIN: Rule(Scope.ADMIN, None, limited=True),
    Operation.STATIC: Rule(None, None, limited=True),
}

ADMIN_OFF: Final = (
    "the control API is off: no admin key is configured. Make one with "
    "'inferd keys new --name NAME --scope admin' and add its line to server.api_keys"
)
NEED_KEY: Final = (
    "this needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' "
    "(gRPC: 'authorization' metadata)"
)


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """The caller: its key (None without one), whether it presented a key that is not
    configured, and its address."""

    key: KeyEntry | None
    address: str | None
    unknown_key: bool = False

    @property
    def name(self) -> str | None:
        return self.key.name if self.key is not None else None

    @property
    def rate_key(self) -> str:
        """Whom the rate limit counts: the key's name, else the address."""
        if self.key is not None:
            return "key:" + self.key.name
        return self.address or "unknown"


def bearer(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` value (scheme case-insensitive)."""
    if authorization is None:
        return None
    scheme, _, key = authorization.partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def ring_from(settings: ServerSettings) -> KeyRing:
    """Every configured key: ``api_keys``, the keys file, and ``admin_token``."""
    entries = [
        keys.parse_entry(text, f"server.api_keys[{i}]") for i, text in enumerate(settings.api_keys)
    ]
    if settings.api_keys_file is not None:
        entries += keys.read_keys_file(settings.api_keys_file)
    if settings.admin_token is not None:
        entries.append(keys.admin_token_entry(settings.admin_token))
    return KeyRing(entries)


class Gateway:
    """Authenticates callers and admits their requests; one per process, shared by every
    transport (so a caller has one rate budget across REST, WebSocket and gRPC)."""

    def __init__(self, settings: ServerSettings, limiter: RateLimiter | None = None) -> None:
        self.keys = ring_from(settings)
        self._settings = settings
        self._trusted = TrustedProxies(settings.trusted_proxies)
        self._limiter = limiter
        self._has_admin = self.keys.has_scope(Scope.ADMIN)

    @property
    def limits_per_model(self) -> bool:
        """Whether the rate limit counts each model apart (admission must name the model)."""
        return self._limiter is not None and self._limiter.per_model

    def principal(
        self, key: str | None, address: str | None, forwarded_for: str | None = None
    ) -> Principal:
        """The caller presenting ``key`` (None: no key) from ``address``, or from the
        address that trusted proxies (``server.trusted_proxies``) say in ``forwarded_for``."""
        address = self._trusted.client(address, forwarded_for)
        if key is None:
            return Principal(None, address)
        entry = self.keys.find(key)
        return Principal(entry, address, unknown_key=entry is None)

    def admitted(
        self, principal: Principal, operation: Operation, model: str | None = None
    ) -> Awaitable[None] | None:
        """Raise unless ``principal`` may perform ``operation`` (on ``model``) now. What to
        await before serving when the rate limit's counters are shared (Redis); None when
        it was decided here (no limit, or counters in this process)."""
        rule = RULES[operation]
        if rule.scope is not None:
            self._authorize(principal, rule)
        if rule.limited and self._limiter is not None:
            return self._limiter.take(principal.rate_key, model)
        return None

    async def admit(
        self, principal: Principal, operation: Operation, model: str | None = None
    ) -> None:
        """:meth:`admitted`, awaited."""
        waiting = self.admitted(principal, operation, model)
        if waiting is not None:
            await waiting

    def allows(self, principal: Principal, operation: Operation) -> bool:
        """Whether ``principal``'s key (or its absence) would be admitted to ``operation``;
        nothing is counted against the rate limit. For a response that shows a part only
        to callers who may read it (the dashboard's state)."""
        rule = RULES[operation]
        if rule.scope is None:
            return True
        try:
            self._authorize(principal, rule)
        except (Unauthenticated, PermissionDenied):
            return False
        return True

    async def count(self, principal: Principal, model: str | None) -> None:
        """Count one message of an admitted stream against the principal's rate limit."""
        if self._limiter is not None:
            await self._limiter.check(principal.rate_key, model)

    def _authorize(self, principal: Principal, rule: Rule) -> None:
        assert rule.scope is not None
        if principal.unknown_key:
            raise Unauthenticated("the API key is not valid")
        if principal.key is not None:
            if rule.scope not in GRANTS[principal.key.scope]:
                raise PermissionDenied(
                    f"the key {principal.key.name!r} has scope {principal.key.scope.value!r}; "
                    f"this needs {rule.scope.value!r}"
                )
            return
        if rule.closed_by is not None and not getattr(self._settings, rule.closed_by):
            return
        if rule.scope is Scope.ADMIN:
            if self._settings.allow_local_admin and _is_loopback(principal.address):
                return
            if not self._has_admin:
                raise PermissionDenied(ADMIN_OFF)
        raise Unauthenticated(NEED_KEY)


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False

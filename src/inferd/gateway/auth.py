"""Admin authorization for the repository endpoints."""

from __future__ import annotations

import hmac
import ipaddress

from inferd.errors import PermissionDenied, Unauthenticated


def is_admin(token: str | None, authorization: str | None, client_host: str | None) -> bool:
    """Whether :func:`check_admin` would let the caller through."""
    try:
        check_admin(token, authorization, client_host)
    except (Unauthenticated, PermissionDenied):
        return False
    return True


def check_admin(token: str | None, authorization: str | None, client_host: str | None) -> None:
    """With a token configured, require ``Authorization: Bearer <token>``; without one,
    allow loopback clients only."""
    if token is None:
        try:
            loopback = client_host is not None and ipaddress.ip_address(client_host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise PermissionDenied(
                "repository changes are allowed from loopback only; set server.admin_token"
            )
        return
    if not authorization or not authorization.startswith("Bearer "):
        raise Unauthenticated("repository changes need 'Authorization: Bearer <admin token>'")
    if not hmac.compare_digest(authorization[7:].encode(), token.encode()):
        raise PermissionDenied("the admin token is not valid")

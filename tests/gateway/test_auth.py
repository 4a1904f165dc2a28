"""Admin authorization of the repository endpoints."""

from __future__ import annotations

import pytest

from inferd.errors import PermissionDenied, Unauthenticated
from inferd.gateway.auth import check_admin


@pytest.mark.parametrize("client", ["127.0.0.1", "::1", "127.0.0.5"])
def test_without_a_token_loopback_clients_are_admins(client: str) -> None:
    check_admin(None, None, client)


@pytest.mark.parametrize("client", ["10.1.2.3", "2001:db8::1", "not-an-address", None])
def test_without_a_token_other_clients_are_refused(client: str | None) -> None:
    with pytest.raises(PermissionDenied, match="loopback only"):
        check_admin(None, None, client)


def test_with_a_token_it_is_required_from_everyone() -> None:
    with pytest.raises(Unauthenticated, match="Bearer"):
        check_admin("s3cret", None, "127.0.0.1")
    with pytest.raises(Unauthenticated):
        check_admin("s3cret", "Basic czNjcmV0", "127.0.0.1")
    with pytest.raises(PermissionDenied, match="not valid"):
        check_admin("s3cret", "Bearer wrong", "127.0.0.1")
    check_admin("s3cret", "Bearer s3cret", "10.1.2.3")

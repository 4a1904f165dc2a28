"""Client addresses through trusted proxies only."""

from __future__ import annotations

import pytest

from inferd.gateway.principal import TrustedProxies, forwarded_for

PROXIES = TrustedProxies(["10.0.0.0/8", "::1"])


def test_no_trusted_proxy_by_default_the_header_is_ignored() -> None:
    assert TrustedProxies([]).client("127.0.0.1", "1.2.3.4") == "127.0.0.1"


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("10.0.0.5", "1.2.3.4", "1.2.3.4"),  # one proxy
        ("10.0.0.5", "9.9.9.9, 1.2.3.4, 10.0.0.7", "1.2.3.4"),  # two trusted hops
        ("10.0.0.5", "10.0.0.8, 10.0.0.7", "10.0.0.8"),  # every hop trusted
        ("10.0.0.5", "1.2.3.4, not-an-ip", "10.0.0.5"),  # malformed: last trusted hop
        ("::1", "2001:db8::1", "2001:db8::1"),
        ("10.0.0.5", None, "10.0.0.5"),
        ("192.168.1.1", "1.2.3.4", "192.168.1.1"),  # not a trusted proxy
        ("127.0.0.1", "1.2.3.4", "127.0.0.1"),  # loopback is not trusted unless listed
        (None, "1.2.3.4", None),
    ],
)
def test_the_client_behind_trusted_proxies(
    peer: str | None, header: str | None, client: str
) -> None:
    assert PROXIES.client(peer, header) == client


def test_repeated_headers_are_joined_in_order() -> None:
    headers = [(b"x-forwarded-for", b"1.1.1.1"), (b"host", b"x"), (b"X-Forwarded-For", b"2.2.2.2")]
    assert forwarded_for(headers) == "1.1.1.1,2.2.2.2"
    assert forwarded_for([(b"host", b"x")]) is None

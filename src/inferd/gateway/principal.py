"""Who is calling, for the rate limit: a client address, seen through trusted proxies only.

``X-Forwarded-For`` is honoured only when the connection comes from an address in
``server.trusted_proxies`` (none by default): the list is read from the right, each hop
that is itself a trusted proxy is skipped, and the first one that is not is the client.
From anyone else the header is ignored, so a client cannot choose its own address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The networks whose ``X-Forwarded-For`` is believed."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client's address: ``peer``, or what trusted proxies say they saw."""
        if peer is None:
            return None
        if forwarded_for is None or not self.networks or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # a malformed hop: the last trusted one is all that is known
            client = hop
            if not self.trusts(hop):
                break
        return client


def forwarded_for(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Every ``X-Forwarded-For`` header of an ASGI scope, joined (None when absent)."""
    values = [v.decode("latin-1") for k, v in headers if k.lower() == b"x-forwarded-for"]
    return ",".join(values) if values else None

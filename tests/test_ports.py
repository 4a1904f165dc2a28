"""Port ownership in-process: real sockets on loopback, no server."""

from __future__ import annotations

import socket

import pytest

from inferd.errors import ConfigError
from inferd.ports import (
    CHANGE,
    PortInUse,
    check_grpc_shared,
    claim_grpc,
    listen_http,
    open_ports,
)
from inferd.settings import ServerSettings
from tests.conftest import free_port


def listener(port: int, *, reuse_port: bool) -> socket.socket:
    """What another process might hold: a listening socket on the port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(8)
    return sock


@pytest.fixture
def port() -> int:
    return free_port()


def test_http_port_in_use(port: int) -> None:
    with listener(port, reuse_port=True), pytest.raises(PortInUse) as caught:
        listen_http("127.0.0.1", port)
    assert (
        caught.value.message
        == f"port {port} (http) is already in use; choose another with {CHANGE['http']}"
    )


def test_nothing_joins_the_http_port(port: int) -> None:
    with listen_http("127.0.0.1", port), pytest.raises(OSError):
        listener(port, reuse_port=True)


def test_http_port_zero_is_a_free_port() -> None:
    ports = open_ports(ServerSettings(host="127.0.0.1", port=0, grpc_port=0))
    try:
        assert ports.grpc_claim is None
        assert ports.http_url == f"http://127.0.0.1:{ports.http.getsockname()[1]}"
        assert ports.http.getsockname()[1] != 0
    finally:
        ports.close()


def test_grpc_port_listened_on_by_another_process(port: int) -> None:
    with listener(port, reuse_port=True), pytest.raises(PortInUse) as caught:
        claim_grpc("127.0.0.1", port)
    assert (
        caught.value.message
        == f"port {port} (grpc) is already in use; choose another with {CHANGE['grpc']}"
    )


def test_a_claimed_grpc_port_cannot_be_claimed_again_on_any_address(port: int) -> None:
    with claim_grpc("127.0.0.1", port):
        with pytest.raises(PortInUse):
            claim_grpc("127.0.0.1", port)
        with pytest.raises(PortInUse):
            claim_grpc("0.0.0.0", port)
    claim_grpc("127.0.0.1", port).close()  # released with its socket


def test_open_ports_releases_http_when_grpc_is_taken(port: int) -> None:
    http_port = free_port()
    settings = ServerSettings(host="127.0.0.1", port=http_port, grpc_port=port)
    with listener(port, reuse_port=False), pytest.raises(PortInUse):
        open_ports(settings)
    listen_http("127.0.0.1", http_port).close()


def test_workers_join_their_grpc_port_but_not_a_foreign_one(port: int) -> None:
    with listener(port, reuse_port=True):
        check_grpc_shared("127.0.0.1", port)  # a fellow worker's socket
    with listener(port, reuse_port=False), pytest.raises(PortInUse):
        check_grpc_shared("127.0.0.1", port)


def test_an_address_that_cannot_be_bound(port: int) -> None:
    with pytest.raises(ConfigError) as caught:
        listen_http("192.0.2.1", port)  # TEST-NET-1: never a local address
    assert caught.value.message == (
        f"cannot listen on 192.0.2.1:{port} (http): Cannot assign requested address"
    )
    assert not isinstance(caught.value, PortInUse)

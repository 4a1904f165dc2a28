"""The ports a server owns: bound before anything loads, never shared with another server.

One ``inferd serve`` (or, under ``--workers N``, its supervisor) owns its ports:

- HTTP: one listening socket, bound without SO_REUSEPORT. Under ``--workers`` the
  supervisor binds it and hands it to its workers, which accept on it together. While it is
  open no other socket can bind the port.
- gRPC: grpcio binds its own sockets. A single server binds the port without SO_REUSEPORT.
  Workers of one supervisor bind it with SO_REUSEPORT (the kernel spreads connections over
  them), so the supervisor first checks that nothing listens on the port and holds a claim
  on it: a Unix socket in the abstract namespace named after the port (see
  :func:`claim_grpc`), which no other inferd can take while the owner lives. A single
  server takes the same claim.

A port already in use stops the server at once with :class:`PortInUse`. What another,
non-inferd process can still do: join the workers' gRPC port if it sets SO_REUSEPORT
itself and runs as the same user (the kernel's rule for SO_REUSEPORT groups). It cannot
join the HTTP port, nor a single server's gRPC port, nor any port of a server of another
user.
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from inferd.errors import ConfigError

if TYPE_CHECKING:
    from inferd.settings import ServerSettings

log = logging.getLogger("inferd")

#: The name of the claim on a gRPC port, in the abstract Unix socket namespace (Linux).
CLAIM_NAME = "\0inferd-grpc-port-{port}"


#: Listener kind -> how to move it (the flag, the setting, the variable).
CHANGE: Final = {
    "http": "--port (server.port, INFERENCE_PORT); 0 picks a free one",
    "grpc": "--grpc-port (server.grpc_port, INFERENCE_GRPC_PORT); 0 disables gRPC",
}


class PortInUse(ConfigError):
    """The port is bound by another process (or claimed by another inferd)."""

    def __init__(self, port: int, kind: str) -> None:
        super().__init__(
            f"port {port} ({kind}) is already in use; choose another with {CHANGE[kind]}"
        )
        self.port = port
        self.kind = kind


def address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _bind(
    host: str, port: int, kind: str, *, reuse_port: bool, backlog: int | None
) -> socket.socket:
    """A socket bound to ``host:port`` (listening when ``backlog`` is given)."""
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Connections of a previous server in TIME_WAIT do not keep a restart from binding.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if backlog is not None:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(port, kind) from exc
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {address(host, port)} ({kind}): {reason}") from exc
    return sock


def listen_http(host: str, port: int) -> socket.socket:
    """The HTTP listening socket (port 0 picks a free port); raises :class:`PortInUse`."""
    sock = _bind(host, port, "http", reuse_port=False, backlog=2048)
    sock.setblocking(False)
    return sock


def claim_grpc(host: str, port: int) -> socket.socket:
    """Claim the gRPC ``port`` for this server and its workers while the result is open.

    Raises :class:`PortInUse` when another inferd holds the claim (on any address: the
    claim is per port number and network namespace) or when a socket listens on the port.
    """
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(CLAIM_NAME.format(port=port))
    except OSError as exc:
        claim.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(port, "grpc") from exc
        raise ConfigError(f"port {port} (grpc): cannot claim it: {exc.strerror}") from exc
    try:
        _bind(host, port, "grpc", reuse_port=False, backlog=1).close()
    except ConfigError:
        claim.close()
        raise
    return claim


def check_grpc_shared(host: str, port: int) -> None:
    """A worker's check that it can join its supervisor's gRPC port with SO_REUSEPORT.

    Binding (without listening) fails when a socket without SO_REUSEPORT, or one of another
    user, holds the port; it takes no connection from the workers already listening.
    """
    _bind(host, port, "grpc", reuse_port=True, backlog=None).close()


@dataclass
class Ports:
    """The ports one server, or one supervisor and its workers, listen on."""

    http: socket.socket
    #: The claim on the gRPC port; None when gRPC is off or a supervisor holds it.
    grpc_claim: socket.socket | None = None
    #: ``https`` when the server has a TLS certificate.
    scheme: str = "http"

    @property
    def http_url(self) -> str:
        host, port = self.http.getsockname()[:2]
        return f"{self.scheme}://{address(host, port)}"

    def close(self) -> None:
        self.http.close()
        if self.grpc_claim is not None:
            self.grpc_claim.close()


def log_grpc_url(host: str, port: int) -> None:
    """The gRPC listener's line, beside the REST one that :func:`open_ports` logs."""
    log.info("gRPC on %s", address(host, port))


def open_ports(server: ServerSettings) -> Ports:
    """Bind the HTTP port and claim the gRPC one (unless it is 0); log the REST URL."""
    http = listen_http(server.host, server.port)
    try:
        claim = claim_grpc(server.host, server.grpc_port) if server.grpc_port else None
    except ConfigError:
        http.close()
        raise
    ports = Ports(http, claim, "https" if server.tls_cert_file is not None else "http")
    log.info("REST on %s", ports.http_url)
    return ports

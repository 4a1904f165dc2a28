"""The gRPC server: every service on one ``grpc.aio`` server, on the service's event loop.

grpc.aio was measured against a thread-pool server handing calls to the loop (docs/grpc.md):
level on unary throughput, but a thread-pool server holds a thread per open stream.

Limits (``limits.grpc``): calls open at once per process (past it RESOURCE_EXHAUSTED, from
grpc.aio), streams per connection (HTTP/2 SETTINGS; past it the stream is refused and the
client sees UNAVAILABLE), keepalive enforcement (a client pinging more often than allowed
gets GOAWAY), idle and maximum connection age.

grpc's core keeps calls the server has not picked up yet in a backlog and, past
``grpc.server.max_pending_requests`` (1000 by default), cancels some of them at random:
the client sees CANCELLED with no message and inferd never sees the call (2,000 calls at
once on one channel lost ~10 % that way). The backlog is sized from the call limit (twice
it before any is cancelled, four times at most), so the call limit answers first.
"""

from __future__ import annotations

import logging
from typing import Final

import grpc
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor

from inferd.core.node import Node
from inferd.core.serving.streams import StreamRegistry
from inferd.errors import ConfigError
from inferd.gateway.accesslog import access_log
from inferd.gateway.admission import Gateway
from inferd.gateway.ratelimit import rate_limiter
from inferd.grpc.health import HealthServicer
from inferd.grpc.protos import grpc_service_pb2, health_pb2, reflection_pb2, simple_pb2
from inferd.grpc.reflection import SERVICE_NAME as REFLECTION_SERVICE
from inferd.grpc.reflection import ReflectionServicer
from inferd.grpc.register import Edge
from inferd.grpc.servicer import InferenceServicer, SimpleServicer
from inferd.settings import GrpcLimits, ServerSettings, Settings

log = logging.getLogger("inferd.grpc")

#: Every service the server answers, as reflection lists them.
SERVICE_NAMES: Final = (
    grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
    simple_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    REFLECTION_SERVICE,
)


class GrpcServer:
    """A started gRPC server listening on ``port``."""

    def __init__(self, server: grpc.aio.Server, port: int, streams: StreamRegistry) -> None:
        self._server = server
        self.port = port
        self._streams = streams

    async def stop(self, grace: float) -> None:
        """Stop reading the open streams and let them send what they owe (their calls end
        UNAVAILABLE), refuse new calls, give running ones ``grace`` seconds, then cancel
        them."""
        await self._streams.close_all(grace)
        await self._server.stop(grace)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def channel_options(limits: GrpcLimits) -> list[tuple[str, int]]:
    """grpc core's server arguments for ``limits.grpc``."""
    options = [
        ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
        ("grpc.http2.min_ping_interval_without_data_ms", _ms(limits.min_ping_interval_s)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.max_connection_idle_ms", _ms(limits.max_connection_idle_s)),
        ("grpc.server.max_pending_requests", 2 * limits.max_concurrent_rpcs),
        ("grpc.server.max_pending_requests_hard_limit", 4 * limits.max_concurrent_rpcs),
    ]
    if limits.max_connection_age_s is not None:
        age = _ms(limits.max_connection_age_s)
        options += [("grpc.max_connection_age_ms", age), ("grpc.max_connection_age_grace_ms", age)]
    return options


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _service(file: FileDescriptor) -> ServiceDescriptor:
    """The one service a generated ``*_pb2`` module's file describes."""
    (service,) = file.services_by_name.values()
    return service


def credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS server credentials from ``server.tls_*`` (None: plain text); with a client CA,
    clients must present a certificate it signed."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    ca_file = settings.tls_client_ca_file
    try:
        key = settings.tls_key_file.read_bytes()
        cert = settings.tls_cert_file.read_bytes()
        ca = ca_file.read_bytes() if ca_file is not None else None
    except OSError as exc:
        raise ConfigError(f"server.tls: cannot read {exc.filename}: {exc.strerror}") from exc
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


async def start_grpc(
    node: Node,
    settings: Settings,
    gateway: Gateway | None = None,
    *,
    shared: bool = False,
) -> GrpcServer:
    """Serve ``node`` on ``server.host:server.grpc_port`` (port 0 picks a free port).

    Messages larger than ``safeguards.max_request_bytes`` are refused with
    RESOURCE_EXHAUSTED before they are decoded. ``gateway`` is the process's shared one
    (by default, one of its own); every call of every service passes it in the one wrapper
    (:class:`inferd.grpc.register.Edge`). TLS when ``server.tls_cert_file`` is set.
    The port is bound with SO_REUSEPORT only when ``shared`` (the workers of one
    supervisor, see ``inferd.ports``); grpcio would set it by default.
    """
    gateway = gateway or Gateway(
        settings.server,
        rate_limiter(settings.safeguards.rate_limit, settings.storage, node.metrics),
    )
    limits = settings.limits.grpc
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.safeguards.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", int(shared)),
            *channel_options(limits),
        ],
        maximum_concurrent_rpcs=limits.max_concurrent_rpcs,
    )
    streams = StreamRegistry()
    edge = Edge(gateway, access_log(settings.server.access_log), settings.routing.key_header)
    servicers: tuple[tuple[FileDescriptor, object], ...] = (
        (grpc_service_pb2.DESCRIPTOR, InferenceServicer(node, streams)),
        (simple_pb2.DESCRIPTOR, SimpleServicer(node, streams)),
        (
            health_pb2.DESCRIPTOR,
            HealthServicer(node.catalog, SERVICE_NAMES, limits.max_health_watchers),
        ),
        (reflection_pb2.DESCRIPTOR, ReflectionServicer(SERVICE_NAMES)),
    )
    for file, servicer in servicers:
        edge.add(server, _service(file), servicer)
    address = _address(settings.server.host, settings.server.grpc_port)
    try:
        tls = credentials(settings.server)
        port = (
            server.add_insecure_port(address)
            if tls is None
            else server.add_secure_port(address, tls)
        )
    except RuntimeError as exc:
        raise ConfigError(f"server.grpc_port: cannot listen on {address}: {exc}") from exc
    await server.start()
    log.debug("gRPC listening on %s", _address(settings.server.host, port))
    return GrpcServer(server, port, streams)

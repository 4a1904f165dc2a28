"""The server: one process's transports over its node (inferd.core.node), and the node's
lifecycle -- start, drain, stop -- which nothing else drives."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import resource
import socket
import ssl
import sys
import time
from typing import Any, Final

import uvicorn

from inferd.core.node import Node, build_node
from inferd.core.store.polling import RepositoryPoller
from inferd.errors import ConfigError
from inferd.gateway import accesslog, requestid
from inferd.gateway.admission import Gateway
from inferd.gateway.ratelimit import rate_limiter
from inferd.grpc.server import start_grpc
from inferd.http.app import create_app
from inferd.http.front import Front
from inferd.http.protocol import LimitedHttpProtocol, protocol_class
from inferd.http.websocket import close_streams
from inferd.ports import Ports, check_grpc_shared, log_grpc_url, open_ports
from inferd.settings import PerformanceSettings, ServerSettings, Settings
from inferd.signals import STOP_SIGNALS, block_stop_signals, unblock_stop_signals
from inferd.summary import log_summary

log = logging.getLogger("inferd")

#: How often a draining server looks whether its HTTP connections have closed.
LINGER_POLL_S: Final = 0.05
#: Descriptors a process needs beside its HTTP connections (gRPC, models, logs, listeners).
SPARE_FILES: Final = 1024


def raise_open_files_limit(connections: int) -> None:
    """Lift the soft limit on open files to what ``limits.http.max_connections`` needs (up
    to the hard limit); say so when it cannot be met."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            "limits.http.max_connections=%d needs %d open files but the hard limit is %d: "
            "connections past about %d fail to be accepted",
            connections,
            needed,
            hard,
            soft - SPARE_FILES,
        )


def tls_options(settings: ServerSettings) -> dict[str, Any]:
    """uvicorn's TLS arguments from ``server.tls_*`` (none: plain HTTP)."""
    if settings.tls_cert_file is None:
        return {}
    for path in (settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file):
        if path is not None and not path.is_file():
            raise ConfigError(f"server.tls: {path} is not a readable file")
    options: dict[str, Any] = {
        "ssl_certfile": str(settings.tls_cert_file),
        "ssl_keyfile": str(settings.tls_key_file),
    }
    if settings.tls_client_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.tls_client_ca_file)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return options


def uvicorn_config(
    settings: Settings, node: Node, gateway: Gateway | None = None
) -> uvicorn.Config:
    gate = node.gate
    return uvicorn.Config(
        create_app(node, gateway),
        host=settings.server.host,
        port=settings.server.port,
        loop="none",
        http=protocol_class(settings.limits.http, lambda: gate.draining),
        ws="auto",
        ws_max_size=settings.safeguards.max_request_bytes,
        lifespan="on",
        # uvicorn's records ("Started server process") go through inferd's handlers and
        # format, not uvicorn's own.
        log_config=None,
        log_level=settings.server.log_level,
        access_log=False,
        # X-Forwarded-For is read by the gateway, from server.trusted_proxies only.
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.server.shutdown_grace_s),
        server_header=False,
        **tls_options(settings.server),
    )


class HttpServer(uvicorn.Server):
    """uvicorn, minus its own signal handling: ``run`` decides when to stop."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Streams get their pending answers and a 1001 before uvicorn drops connections.
        app = self.config.app
        await close_streams(
            app.app if isinstance(app, Front) else app, self.config.timeout_graceful_shutdown or 0
        )
        await super().shutdown(sockets)

    async def linger(self, until: float) -> None:
        """While draining, keep HTTP/1.1 connections open until each has answered a request
        (503 with ``Connection: close``) or idled past its keep-alive timeout, or until
        ``until`` (monotonic): a request sent on an idle connection is answered, not reset."""
        while time.monotonic() < until and any(
            isinstance(c, LimitedHttpProtocol) for c in self.server_state.connections
        ):
            await asyncio.sleep(LINGER_POLL_S)


async def run(
    settings: Settings, ports: Ports, *, shared: bool = False, summarize: bool = True
) -> None:
    """Serve every transport of one process until SIGTERM/SIGINT, then drain and exit.

    On the signal readiness turns false and new inference gets 503 at once (with
    ``Connection: close``); work already accepted runs to completion; open HTTP connections
    get to send one more request (answered 503) until their keep-alive timeout; then the
    ports close and the models unload. All of it within ``server.shutdown_grace_s`` of the
    signal (give or take a second of rounding): what is still running then is cancelled,
    and model threads that never return are abandoned.
    ``shared``: this process is one of a supervisor's workers, which bind the gRPC port
    together. ``summarize``: log the start-up summary (one worker of several does).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    unblock_stop_signals()  # blocked since serve() started (inferd.signals)
    node = build_node(settings)
    await node.group.start()
    limiter = rate_limiter(settings.safeguards.rate_limit, settings.storage, node.metrics)
    gateway = Gateway(settings.server, limiter)
    grpc_server = None
    if settings.server.grpc_port:
        if shared:
            check_grpc_shared(settings.server.host, settings.server.grpc_port)
        grpc_server = await start_grpc(node, settings, gateway, shared=shared)
        if not shared:  # the supervisor logs the workers' URLs
            log_grpc_url(settings.server.host, grpc_server.port)
    http = HttpServer(uvicorn_config(settings, node, gateway))
    poller = RepositoryPoller(node.manager, settings.models.poll_interval_s)
    poller.start(node.loaded)  # polls once every model has loaded
    serving = asyncio.create_task(http.serve(sockets=[ports.http]))
    # The ports answer at once (liveness); /ready turns 200 once every model has loaded.
    loading = asyncio.create_task(node.start())
    tls = settings.server.tls_cert_file is not None
    told = None
    if summarize:
        # A worker's Ports know no scheme: the settings say whether it serves TLS.
        rest = ports.http_url.replace("http://", "https://", 1) if tls else ports.http_url
        grpc = (settings.server.host, grpc_server.port) if grpc_server is not None else None
        told = asyncio.create_task(log_summary(node, rest, grpc, tls))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        grace = settings.server.shutdown_grace_s
        log.info("signal received: draining (grace %.0f s)", grace)
        deadline = time.monotonic() + grace
        # Readiness turns false at once; a poll under way finishes its load first.
        drained, _ = await asyncio.gather(node.drain(grace), poller.stop())
        if not drained:
            log.warning("grace period over: unloading models under the requests still running")
            await node.stop()  # they are answered 503 rather than cut off
        keepalive = settings.limits.http.keepalive_timeout_s + LINGER_POLL_S
        await http.linger(min(deadline, deadline - grace + keepalive))
        # uvicorn waits this long (whole seconds, 0 would time out at once) for requests
        # still running.
        http.config.timeout_graceful_shutdown = max(1, math.ceil(deadline - time.monotonic()))
        http.should_exit = True
    stopping.cancel()
    if told is not None:
        told.cancel()
    await poller.stop()  # (done already after a signal)
    await serving  # the app's streams closed (its lifespan)
    loading.cancel()  # a signal while the repository was loading
    with contextlib.suppress(asyncio.CancelledError):
        await loading
    await node.stop()
    if grpc_server is not None:
        await grpc_server.stop(1.0)  # the node has drained: only idle streams are left
    await node.group.stop()
    if limiter is not None:
        await limiter.close()


def tune_interpreter(performance: PerformanceSettings) -> None:
    """The process's interpreter settings: the GIL's switch interval, and the threshold
    of the collector's youngest generation (the older ones keep Python's)."""
    sys.setswitchinterval(performance.gil_switch_interval_us / 1e6)
    gc.set_threshold(performance.gc_threshold, *gc.get_threshold()[1:])


def serve(
    settings: Settings, worker_id: int | None = None, http_socket: socket.socket | None = None
) -> None:
    """Run one server process on uvloop until it is told to stop.

    A server of its own binds its ports first (:func:`inferd.ports.open_ports`) and raises
    :class:`inferd.ports.PortInUse` before it loads anything. A worker gets its HTTP socket
    from the supervisor, which also claimed the gRPC port for it.
    """
    import uvloop

    block_stop_signals()
    # TensorFlow's C++ start-up notes (oneDNN, cpu_feature_guard) only at debug; a value
    # the user set wins. Read by TensorFlow when a model first imports it.
    debug = settings.server.log_level == "debug"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "2")
    prefix = "" if worker_id is None else f"[worker {worker_id}] "
    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {prefix}%(name)s [%(request_id)s]: %(message)s",
    )
    requestid.install(logging.getLogger().handlers)
    accesslog.configure(settings.server.access_log)
    tune_interpreter(settings.performance)
    raise_open_files_limit(settings.limits.http.max_connections)
    ports = open_ports(settings.server) if http_socket is None else Ports(http_socket)
    try:
        shared = http_socket is not None
        # Of several workers, the first logs the summary (they serve the same repository).
        uvloop.run(run(settings, ports, shared=shared, summarize=worker_id in (None, 0)))
    finally:
        ports.close()

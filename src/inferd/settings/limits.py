"""The ``limits`` section (HTTP, gRPC and per-model bounds), the ``stream`` section (long-lived
streams) and the ``shared_memory`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from inferd.settings.section import Section


class StreamSettings(Section):
    """Limits of every stream: WebSocket, gRPC ModelStreamInfer and PredictStream."""

    idle_timeout_s: float = Field(
        60.0,
        gt=0,
        description="A stream with no message and no answer pending for this long is "
        "closed (WebSocket code 1000, gRPC DEADLINE_EXCEEDED).",
    )
    max_messages_per_second: float = Field(
        100.0,
        gt=0,
        description="Sustained message rate per stream (a burst of a second's worth is "
        "allowed); past it the stream is closed (WebSocket code 1008, gRPC "
        "RESOURCE_EXHAUSTED).",
    )
    max_in_flight: int = Field(
        16,
        ge=1,
        description="Messages of one stream being served at once; the stream "
        "stops reading while this many answers are pending.",
    )
    max_buffered_responses: int = Field(
        8,
        ge=1,
        description="Partial responses of a streaming model buffered per request while "
        "the client has not taken them; the model's generator waits when the buffer is full.",
    )


class HttpLimits(Section):
    """Bounds on HTTP/1.1 connections (REST and the WebSocket handshake); see README "Limits"."""

    max_header_bytes: int = Field(
        65_536,
        ge=1024,
        description="Largest request head (request line and headers), counted as it arrives; "
        "past it the answer is 431 and the connection closes.",
    )
    max_headers: int = Field(
        100, ge=1, description="Most header fields one request may carry; past it, 431 and close."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Time a client has to send a whole request head, from the connection's "
        "first byte (or its opening, for a silent one); past it, 408 and close.",
    )
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Time a client has to send a request body once its head arrived; past "
        "it, 408 and close.",
    )
    keepalive_timeout_s: float = Field(
        5.0, gt=0, description="An idle keep-alive connection is closed after this long."
    )
    max_connections: int = Field(
        4096,
        ge=1,
        description="Open HTTP and WebSocket connections per process; a connection past it "
        "gets 503 with Retry-After and is closed.",
    )


class GrpcLimits(Section):
    """Bounds on gRPC (HTTP/2) connections and calls; see README "Limits"."""

    max_concurrent_rpcs: int = Field(
        2048,
        ge=1,
        description="Calls (streams included) open at once per process; past it, "
        "RESOURCE_EXHAUSTED.",
    )
    max_concurrent_streams: int = Field(
        4096,
        ge=1,
        description="Streams one connection may have open (HTTP/2 SETTINGS). grpc clients "
        "do not queue calls past it: the server refuses the stream and the call fails "
        "UNAVAILABLE, so keep it above max_concurrent_rpcs unless that is wanted.",
    )
    min_ping_interval_s: float = Field(
        10.0,
        ge=0,
        description="Shortest interval between client pings the server accepts; a client "
        "pinging faster is sent GOAWAY (too_many_pings).",
    )
    max_connection_idle_s: float = Field(
        300.0, gt=0, description="A connection with no call for this long is closed (GOAWAY)."
    )
    max_connection_age_s: float | None = Field(
        None,
        gt=0,
        description="Close every connection after this long (GOAWAY, calls in flight get "
        "a grace of the same length), so clients rebalance; unset keeps them.",
    )
    max_health_watchers: int = Field(
        100,
        ge=1,
        description="Health Watch calls open at once; past it, RESOURCE_EXHAUSTED.",
    )


class ModelLimits(Section):
    """Bounds on model execution; see README "Limits"."""

    max_batch_time_s: float = Field(
        60.0,
        gt=0,
        description="Default for model.yaml's max_batch_time_s: a batch running longer "
        "marks its version unhealthy (its requests and new ones get 503) until it returns.",
    )
    unload_grace_s: float = Field(
        30.0,
        ge=0,
        description="How long an unload waits for a version's queued and running work; "
        "then what is left fails with 503 and a model thread that never returns is abandoned.",
    )


class LimitsSettings(Section):
    http: HttpLimits = Field(default_factory=HttpLimits)
    grpc: GrpcLimits = Field(default_factory=GrpcLimits)
    models: ModelLimits = Field(default_factory=ModelLimits)


class SharedMemorySettings(Section):
    """Triton's system shared memory extension (POSIX shared memory, same host only)."""

    mode: Literal["off", "local", "any"] = Field(
        "local",
        description="off: refused; local: for clients on the server's host (loopback "
        "addresses) only; any: for every client (only where remote clients share the host's "
        "/dev/shm, as containers of one pod can).",
    )
    max_regions: int = Field(
        64, ge=1, le=4096, description="Regions registered at once, over every caller."
    )
    max_total_bytes: int = Field(
        1 << 30, ge=1, description="Bytes of every registered region together."
    )

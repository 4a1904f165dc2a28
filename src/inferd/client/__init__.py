"""inferd's Python client: HTTP (:class:`Client`, :class:`AsyncClient`) and gRPC
(:class:`GrpcClient`, :class:`AsyncGrpcClient`), numpy in and out.

Refusals raise inferd's own exception tree (``inferd.errors``: ``NotFound``,
``ResourceExhausted``, ``DeadlineExceeded``...), the same classes the server raises.
"""

from __future__ import annotations

from inferd.client.aio import AsyncClient
from inferd.client.codec import InferResult
from inferd.client.grpc import AsyncGrpcClient, GrpcClient
from inferd.client.http import Client
from inferd.client.retry import NO_RETRY, Retry

__all__ = [
    "NO_RETRY",
    "AsyncClient",
    "AsyncGrpcClient",
    "Client",
    "GrpcClient",
    "InferResult",
    "Retry",
]

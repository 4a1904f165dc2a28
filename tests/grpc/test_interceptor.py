"""The admission interceptor: peers, request ids in metadata."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from inferd.grpc.interceptor import client_host
from inferd.grpc.protos import grpc_service_pb2 as pb


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:50001", "127.0.0.1"),
        ("ipv6:[::1]:50001", "::1"),
        ("ipv6:%5B::1%5D:50001", "::1"),
        ("ipv4:10.1.2.3:443", "10.1.2.3"),
        ("unix:/tmp/socket", None),
    ],
)
def test_client_host_of_a_peer(peer: str, host: str | None) -> None:
    assert client_host(peer) == host


async def test_every_call_answers_its_request_id(serve: Callable[..., Any]) -> None:
    served = await serve()
    call = served.infer.ServerLive(pb.ServerLiveRequest(), metadata=(("x-request-id", "g-7"),))
    assert (await call).live
    assert ("x-request-id", "g-7") in tuple(await call.initial_metadata())
    made = served.infer.ServerMetadata(
        pb.ServerMetadataRequest(), metadata=(("x-request-id", "not safe"),)
    )
    await made
    (value,) = [v for k, v in await made.initial_metadata() if k == "x-request-id"]
    assert value != "not safe" and len(value) == 32


async def test_a_refused_stream_never_runs(serve: Callable[..., Any]) -> None:
    served = await serve(server={"require_api_key": True, "admin_token": "t"})
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async for _ in served.infer.ModelStreamInfer(iter([])):
            pass
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

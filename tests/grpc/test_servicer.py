"""GRPCInferenceService in-process: generated stubs against start_grpc on a free port."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from inferd.example import TINY, mlp_reference, mlp_weights
from inferd.gateway.keys import Scope, new_key
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from inferd.grpc.server import start_grpc
from inferd.http.app import create_app, default_gateway
from inferd.tensors import from_binary
from tests.conftest import until
from tests.grpc.conftest import SLOW_S, Served

Input = pb.ModelInferRequest.InferInputTensor
Output = pb.ModelInferRequest.InferRequestedOutputTensor
TINY_WEIGHTS = mlp_weights(TINY, seed=0)


def tiny_request(x: np.ndarray[Any, Any], model: str = "tiny", **fields: Any) -> Any:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[Input(name="input", datatype="FP32", shape=list(x.shape))],
        raw_input_contents=[x.astype(np.float32).tobytes()],
        **fields,
    )


def assert_close(actual: np.ndarray[Any, Any], expected: np.ndarray[Any, Any]) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def output(response: Any, index: int = 0) -> np.ndarray[Any, Any]:
    tensor = response.outputs[index]
    raw = response.raw_output_contents[index]
    return from_binary(tensor.name, tensor.datatype, tuple(tensor.shape), raw)


async def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    code: grpc.StatusCode = caught.value.code()
    return code


async def assert_serving(served: Served) -> None:
    x = np.ones((1, 4), dtype=np.float32)
    response = await served.infer.ModelInfer(tiny_request(x))
    assert_close(output(response), mlp_reference(TINY_WEIGHTS, x))


# -- health and metadata ----------------------------------------------------------------------


async def test_health_and_metadata(served: Served) -> None:
    stub = served.infer
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="tiny"))).ready
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="tiny", version="1"))).ready
    metadata = await stub.ServerMetadata(pb.ServerMetadataRequest())
    assert metadata.name == "inferd"
    assert "model_repository" in metadata.extensions
    model = await stub.ModelMetadata(pb.ModelMetadataRequest(name="tiny"))
    assert (model.name, list(model.versions), model.platform) == (
        "tiny",
        ["1"],
        "pytorch_libtorch",
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in model.inputs] == [
        ("input", "FP32", [-1, 4])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in model.outputs] == [
        ("output", "FP32", [-1, 2])
    ]


async def test_not_ready_before_the_models_load(serve: Callable[..., Any]) -> None:
    served = await serve(start=False)
    assert not (await served.infer.ServerReady(pb.ServerReadyRequest())).ready
    with pytest.raises(grpc.aio.AioRpcError) as early:
        await served.infer.ModelInfer(tiny_request(np.zeros((1, 4))))
    assert (early.value.code(), early.value.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "model 'tiny' is not known; known models: []",
    )
    await served.node.start()
    assert (await served.infer.ServerReady(pb.ServerReadyRequest())).ready
    await assert_serving(served)


async def test_model_config_and_statistics(served: Served) -> None:
    config = (await served.infer.ModelConfig(pb.ModelConfigRequest(name="tiny"))).config
    assert (config.name, config.platform, config.backend, config.max_batch_size) == (
        "tiny",
        "pytorch_libtorch",
        "torchscript",
        32,
    )
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("input", 11, [4])  # TYPE_FP32, batch dimension excluded
    ]
    assert [(o.name, list(o.dims)) for o in config.output] == [("output", [2])]
    assert config.version_policy.latest.num_versions == 1
    assert config.instance_group[0].count == 1
    assert config.HasField("dynamic_batching")

    await served.infer.ModelInfer(tiny_request(np.zeros((3, 4))))
    stats = await served.infer.ModelStatistics(pb.ModelStatisticsRequest(name="tiny"))
    [tiny] = stats.model_stats
    assert (tiny.name, tiny.version, tiny.inference_count, tiny.execution_count) == (
        "tiny",
        "1",
        3,
        1,
    )
    assert tiny.inference_stats.success.count == 1
    assert [b.batch_size for b in tiny.batch_stats] == [3]
    every = await served.infer.ModelStatistics(pb.ModelStatisticsRequest())
    assert {s.name for s in every.model_stats} == {"tiny", "slow", "echo"}


# -- inference -----------------------------------------------------------------------------------


async def test_infer_raw_contents(served: Served) -> None:
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    response = await served.infer.ModelInfer(tiny_request(x, id="req-1", model_version="1"))
    assert (response.model_name, response.model_version, response.id) == ("tiny", "1", "req-1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("output", "FP32", [5, 2])
    ]
    assert_close(output(response), mlp_reference(TINY_WEIGHTS, x))


async def test_infer_typed_contents(served: Served) -> None:
    x = np.array([[0.5, -1.0, 2.0, 3.0]], dtype=np.float32)
    tensor = Input(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
    response = await served.infer.ModelInfer(
        pb.ModelInferRequest(model_name="tiny", inputs=[tensor])
    )
    assert len(response.raw_output_contents) == 1
    assert_close(output(response), mlp_reference(TINY_WEIGHTS, x))


async def test_typed_int_and_bytes_contents_and_requested_outputs(served: Served) -> None:
    f = Input(name="f", datatype="FP32", shape=[2, 3])
    f.contents.fp32_contents.extend([1, 2, 3, 4, 5, 6])
    i = Input(name="i", datatype="INT16", shape=[2, 3])
    i.contents.int_contents.extend([-32768, 0, 1, 2, 3, 32767])
    s = Input(name="s", datatype="BYTES", shape=[2, 1])
    s.contents.bytes_contents.extend([b"hello", b"\x00\xff"])
    request = pb.ModelInferRequest(
        model_name="echo", inputs=[f, i, s], outputs=[Output(name="s_out"), Output(name="i_out")]
    )
    response = await served.infer.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["s_out", "i_out"]
    assert output(response, 0).tolist() == [[b"hello"], [b"\x00\xff"]]
    assert output(response, 1).dtype == np.int16
    assert output(response, 1).tolist() == [[-32768, 0, 1], [2, 3, 32767]]


async def test_request_timeout_parameter(served: Served) -> None:
    request = pb.ModelInferRequest(
        model_name="slow",
        inputs=[Input(name="x", datatype="FP32", shape=[1, 1])],
        raw_input_contents=[np.zeros((1, 1), np.float32).tobytes()],
    )
    request.parameters["timeout"].int64_param = int(SLOW_S * 1e6 / 5)
    assert await code_of(served.infer.ModelInfer(request)) == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (
            lambda: pb.ModelInferRequest(model_name="nope"),
            grpc.StatusCode.NOT_FOUND,
            "model 'nope' is not known",
        ),
        (
            lambda: tiny_request(np.zeros((1, 4)), model_version="7"),
            grpc.StatusCode.NOT_FOUND,
            "has no version '7'",
        ),
        (
            lambda: pb.ModelInferRequest(
                model_name="tiny",
                inputs=[Input(name="input", datatype="INT32", shape=[1, 4])],
                raw_input_contents=[np.zeros((1, 4), np.int32).tobytes()],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expected datatype FP32, got INT32",
        ),
        (
            lambda: tiny_request(np.zeros((1, 5))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expected shape [-1, 4], got [1, 5]",
        ),
        (
            lambda: pb.ModelInferRequest(
                model_name="tiny",
                inputs=[Input(name="other", datatype="FP32", shape=[1, 4])],
                raw_input_contents=[np.zeros((1, 4), np.float32).tobytes()],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown input 'other'",
        ),
        (
            lambda: pb.ModelInferRequest(
                model_name="tiny",
                inputs=[Input(name="input", datatype="FP32", shape=[1, 4])],
                raw_input_contents=[b"\0" * 12],
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "needs 16 bytes, got 12",
        ),
        (
            lambda: tiny_request(np.full((1, 4), np.nan)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "NaN or Inf",
        ),
        (
            lambda: tiny_request(np.zeros((1, 4)), outputs=[Output(name="logits")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown output 'logits'",
        ),
        (
            lambda: tiny_request(np.zeros((1, 4)), model="../tiny"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "is not allowed",
        ),
    ],
)
async def test_bad_requests_get_their_status_and_the_server_keeps_serving(
    served: Served, make: Callable[[], Any], code: grpc.StatusCode, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.infer.ModelInfer(make())
    assert caught.value.code() == code
    assert message in (caught.value.details() or "")
    await assert_serving(served)


# -- streaming ----------------------------------------------------------------------------------


async def test_stream_answers_in_order_and_survives_a_bad_request(served: Served) -> None:
    rng = np.random.default_rng(1)
    rows = [rng.standard_normal((1, 4)).astype(np.float32) for _ in range(96)]
    bad_at = 40

    def requests() -> Any:
        for n, row in enumerate(rows):
            if n == bad_at:
                yield tiny_request(np.zeros((1, 3)), id=str(n))
            else:
                yield tiny_request(row, id=str(n))

    responses = [r async for r in served.infer.ModelStreamInfer(requests())]
    assert [r.infer_response.id for r in responses] == [str(n) for n in range(len(rows))]
    assert "expected shape [-1, 4], got [1, 3]" in responses[bad_at].error_message
    for n, response in enumerate(responses):
        if n != bad_at:
            assert response.error_message == ""
            expected = mlp_reference(TINY_WEIGHTS, rows[n])
            assert_close(output(response.infer_response), expected)


async def test_a_client_can_leave_a_stream_early(served: Served) -> None:
    call = served.infer.ModelStreamInfer()
    await call.write(tiny_request(np.zeros((1, 4)), id="a"))
    first = await call.read()
    assert first.infer_response.id == "a"
    call.cancel()
    await assert_serving(served)


# -- limits ---------------------------------------------------------------------------------------


async def test_a_message_over_the_size_limit_is_refused(serve: Callable[..., Any]) -> None:
    served = await serve(safeguards={"max_request_size_mb": 0.01})
    big = np.zeros((1000, 4), dtype=np.float32)  # 16 kB of raw contents
    code = await code_of(served.infer.ModelInfer(tiny_request(big)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    await assert_serving(served)


async def test_the_client_deadline_drops_queued_work(served: Served) -> None:
    """A request whose deadline passes while it waits behind a slow batch never runs."""
    stub = served.infer

    def slow_request(value: float) -> Any:
        return pb.ModelInferRequest(
            model_name="slow",
            inputs=[Input(name="x", datatype="FP32", shape=[1, 1])],
            raw_input_contents=[np.full((1, 1), value, np.float32).tobytes()],
        )

    async def stats() -> Any:
        reply = await stub.ModelStatistics(pb.ModelStatisticsRequest(name="slow"))
        return reply.model_stats[0]

    async def running() -> bool:
        return bool((await stats()).inference_stats.queue.count >= 1)

    first = asyncio.ensure_future(stub.ModelInfer(slow_request(1.0)))
    await until(running, 10, "the first batch to run")
    late = stub.ModelInfer(slow_request(2.0), timeout=SLOW_S / 5)
    assert await code_of(late) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert output(await first).tolist() == [[1.0]]
    assert output(await stub.ModelInfer(slow_request(3.0))).tolist() == [[3.0]]
    after = await stats()
    assert (after.execution_count, after.inference_count) == (2, 2)


# -- model repository ---------------------------------------------------------------------------


ADMIN_KEY, ADMIN_ENTRY = new_key("ops", Scope.ADMIN)
INFER_KEY, INFER_ENTRY = new_key("app", Scope.INFER)
KEYED = {"api_keys": [ADMIN_ENTRY.line(), INFER_ENTRY.line()]}
AS_ADMIN = (("authorization", f"Bearer {ADMIN_KEY}"),)


async def test_repository_index(serve: Callable[..., Any]) -> None:
    served = await serve(server=KEYED)
    index = await served.infer.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=AS_ADMIN)
    assert {(m.name, m.version, m.state) for m in index.models} == {
        ("tiny", "1", "READY"),
        ("slow", "1", "READY"),
        ("echo", "1", "READY"),
    }
    unload = pb.RepositoryModelUnloadRequest(model_name="echo")
    await served.infer.RepositoryModelUnload(unload, metadata=AS_ADMIN)
    ready = await served.infer.RepositoryIndex(
        pb.RepositoryIndexRequest(ready=True), metadata=AS_ADMIN
    )
    assert {m.name for m in ready.models} == {"tiny", "slow"}


async def test_without_keys_the_repository_is_off_from_loopback_too(served: Served) -> None:
    stub = served.infer
    for call in (
        stub.RepositoryIndex(pb.RepositoryIndexRequest()),
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="echo")),
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="echo")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "inferd keys new" in (refused.value.details() or "")
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="echo"))).ready


async def test_an_admin_key_may_unload_and_load(serve: Callable[..., Any]) -> None:
    stub = (await serve(server=KEYED)).infer
    unload = pb.RepositoryModelUnloadRequest(model_name="echo")
    await stub.RepositoryModelUnload(unload, metadata=(("x-api-key", ADMIN_KEY),))
    assert not (await stub.ModelReady(pb.ModelReadyRequest(name="echo"))).ready
    await stub.RepositoryModelLoad(
        pb.RepositoryModelLoadRequest(model_name="echo"), metadata=AS_ADMIN
    )
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="echo"))).ready
    unknown = stub.RepositoryModelLoad(
        pb.RepositoryModelLoadRequest(model_name="nope"), metadata=AS_ADMIN
    )
    assert await code_of(unknown) == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", "Bearer nope"),), grpc.StatusCode.UNAUTHENTICATED),
        ((("authorization", f"Bearer {INFER_KEY}"),), grpc.StatusCode.PERMISSION_DENIED),
    ],
)
async def test_the_repository_needs_an_admin_key(
    serve: Callable[..., Any], metadata: Any, code: grpc.StatusCode
) -> None:
    stub = (await serve(server=KEYED)).infer
    unload = pb.RepositoryModelUnloadRequest(model_name="echo")
    assert await code_of(stub.RepositoryModelUnload(unload, metadata=metadata)) == code
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="echo"))).ready


async def test_the_admin_token_is_an_admin_key(serve: Callable[..., Any]) -> None:
    stub = (await serve(server={"admin_token": "s3cret"})).infer
    unload = pb.RepositoryModelUnloadRequest(model_name="echo")
    assert await code_of(stub.RepositoryModelUnload(unload)) == grpc.StatusCode.UNAUTHENTICATED
    await stub.RepositoryModelUnload(unload, metadata=(("authorization", "Bearer s3cret"),))
    assert not (await stub.ModelReady(pb.ModelReadyRequest(name="echo"))).ready


LIMITED = {"rate_limit": {"enabled": True, "requests_per_minute": 2}}


async def test_the_rate_limit_applies_per_client_and_spares_probes(
    serve: Callable[..., Any],
) -> None:
    served = await serve(safeguards=LIMITED)
    request = tiny_request(np.zeros((1, 4)))
    for _ in range(2):
        await served.infer.ModelInfer(request)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await served.infer.ModelInfer(request)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requests per minute" in (refused.value.details() or "")
    metadata = dict(tuple(refused.value.trailing_metadata() or ()))
    assert 1 <= int(metadata["retry-after"]) <= 60
    assert (metadata["ratelimit-limit"], metadata["ratelimit-remaining"]) == ("2", "0")
    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        async for _ in served.infer.ModelStreamInfer(iter([request])):
            pass
    assert streamed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (await served.infer.ServerLive(pb.ServerLiveRequest())).live
    assert (await served.infer.ServerReady(pb.ServerReadyRequest())).ready
    ready = await served.infer.ModelReady(pb.ModelReadyRequest(name="tiny"))
    assert ready.ready


async def test_per_model_rate_limits_apply_to_grpc(serve: Callable[..., Any]) -> None:
    limited = {"rate_limit": {"enabled": True, "requests_per_minute": 2, "per_model": True}}
    served = await serve(safeguards=limited)
    request = tiny_request(np.zeros((1, 4)))
    await served.infer.ModelInfer(request)
    await served.infer.ModelMetadata(pb.ModelMetadataRequest(name="tiny"))
    for call in (
        served.infer.ModelInfer(request),
        served.infer.ModelMetadata(pb.ModelMetadataRequest(name="tiny")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Another model has a budget of its own.
    for _ in range(2):
        await served.infer.ModelMetadata(pb.ModelMetadataRequest(name="echo"))
    assert (
        await code_of(served.infer.ModelMetadata(pb.ModelMetadataRequest(name="echo")))
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    # A request that does not parse is still the handler's to refuse.
    malformed = served.channel.unary_unary(
        "/inference.GRPCInferenceService/ModelMetadata",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    assert await code_of(malformed(b"\xff\xff\xff")) == grpc.StatusCode.INVALID_ARGUMENT


async def test_rest_and_grpc_share_one_budget(
    grpc_repo: Path, node_factory: Callable[..., Any]
) -> None:
    node = node_factory(
        grpc_repo, safeguards=LIMITED, models={"default_model": "tiny"}, server={"grpc_port": 0}
    )
    await node.start()
    gateway = default_gateway(node)
    server = await start_grpc(node, node.settings, gateway)
    transport = httpx.ASGITransport(app=create_app(node, gateway), client=("127.0.0.1", 1))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://inferd") as client:
            for _ in range(2):
                answer = await client.post("/predict", json={"inputs": [1, 2, 3, 4]})
                assert answer.status_code == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ModelInfer(tiny_request(np.zeros((1, 4))))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await server.stop(0)


async def test_x_forwarded_for_is_read_from_trusted_proxies_only(
    serve: Callable[..., Any],
) -> None:
    """The test's channel comes from 127.0.0.1: listed as a proxy, the metadata names the
    client; each rotated address gets a budget of its own."""
    served = await serve(safeguards=LIMITED, server={"trusted_proxies": ["127.0.0.1"]})
    request = tiny_request(np.zeros((1, 4)))
    for i in range(4):
        await served.infer.ModelInfer(request, metadata=(("x-forwarded-for", f"203.0.113.{i}"),))
    for _ in range(2):
        await served.infer.ModelInfer(request)  # the proxy's own address: its own budget
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await served.infer.ModelInfer(request)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_several_workers_refuse_a_load_or_unload(serve: Callable[..., Any]) -> None:
    served = await serve(server={**KEYED, "workers": 2})
    for call in (
        served.infer.RepositoryModelUnload(
            pb.RepositoryModelUnloadRequest(model_name="echo"), metadata=AS_ADMIN
        ),
        served.infer.RepositoryModelLoad(
            pb.RepositoryModelLoadRequest(model_name="echo"), metadata=AS_ADMIN
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "runs 2 worker processes (server.workers), each with its own models" in (
            refused.value.details() or ""
        )
    index = await served.infer.RepositoryIndex(pb.RepositoryIndexRequest(), metadata=AS_ADMIN)
    assert ("echo", "1", "READY") in {(m.name, m.version, m.state) for m in index.models}

"""gRPC streams: streaming models on ModelStreamInfer (tritonclient.grpc against a real
server; grpc.aio stubs in-process), and the stream limits on ModelStreamInfer and
PredictStream."""

from __future__ import annotations

import asyncio
import dataclasses
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc, simple_pb2, simple_pb2_grpc
from inferd.grpc.server import GrpcServer, start_grpc
from inferd.tensors import from_binary
from tests.conftest import NodeFactory, ServerProcess, until
from tests.streaming import busy_max, steps

Input = pb.ModelInferRequest.InferInputTensor


def count_inputs(tag: str, n: int, delay_ms: int = 0) -> list[Any]:
    inputs = []
    for name, datatype, value in [
        ("n", "INT32", np.array([n], dtype=np.int32)),
        ("delay_ms", "INT32", np.array([delay_ms], dtype=np.int32)),
        ("tag", "BYTES", np.array([tag.encode()], dtype=object)),
    ]:
        tensor = triton.InferInput(name, [1], datatype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def count_request(tag: str, n: int, delay_ms: int = 0, **fields: Any) -> Any:
    raw = [
        np.array([n], dtype="<i4").tobytes(),
        np.array([delay_ms], dtype="<i4").tobytes(),
        len(tag).to_bytes(4, "little") + tag.encode(),
    ]
    return pb.ModelInferRequest(
        model_name="count",
        inputs=[
            Input(name="n", datatype="INT32", shape=[1]),
            Input(name="delay_ms", datatype="INT32", shape=[1]),
            Input(name="tag", datatype="BYTES", shape=[1]),
        ],
        raw_input_contents=raw,
        **fields,
    )


def busy_request(x: float = 1.0) -> Any:
    return pb.ModelInferRequest(
        model_name="busy",
        inputs=[Input(name="x", datatype="FP32", shape=[1, 1])],
        raw_input_contents=[np.array([[x]], dtype="<f4").tobytes()],
    )


def final(result: Any) -> bool:
    flag: bool = result.get_response().parameters["triton_final_response"].bool_param
    return flag


# -- tritonclient.grpc against a real server ---------------------------------------------------


@pytest.fixture(scope="module")
def client(stream_server: ServerProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(stream_server.grpc_target) as made:
        yield made


def test_tritonclient_receives_each_partial_and_an_empty_final_response(
    client: triton.InferenceServerClient,
) -> None:
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put(error or result))
    try:
        client.async_stream_infer(
            "count",
            count_inputs("triton-final", 3),
            request_id="r1",
            enable_empty_final_response=True,
        )
        received = [results.get(timeout=10) for _ in range(4)]
    finally:
        client.stop_stream()
    assert [r.as_numpy("i").tolist() for r in received[:3]] == [[0], [1], [2]]
    assert [final(r) for r in received] == [False, False, False, True]
    assert received[3].as_numpy("i") is None  # the final response carries no outputs
    assert {r.get_response().id for r in received} == {"r1"}
    assert results.empty()


def test_without_the_empty_final_response_only_partials_come(
    client: triton.InferenceServerClient,
) -> None:
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put(error or result))
    try:
        client.async_stream_infer("count", count_inputs("triton-partials", 3), request_id="a")
        tiny = triton.InferInput("input", [1, 4], "FP32")
        tiny.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        client.async_stream_infer("tiny", [tiny], request_id="b")
        received = [results.get(timeout=10) for _ in range(4)]
    finally:
        client.stop_stream()
    assert [r.get_response().id for r in received] == ["a", "a", "a", "b"]
    assert [final(r) for r in received] == [False, False, False, True]
    assert received[3].as_numpy("output").shape == (1, 2)


def test_a_failing_stream_answers_with_an_error_after_its_partials(
    client: triton.InferenceServerClient,
) -> None:
    results: queue.Queue[Any] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer("count", count_inputs("triton-fails", -2))
        received = [results.get(timeout=10) for _ in range(3)]
    finally:
        client.stop_stream()
    assert [r.as_numpy("i").tolist() for r, _ in received[:2]] == [[0], [1]]
    assert "internal error (request id " in str(received[2][1])


# -- grpc.aio stubs, in-process -----------------------------------------------------------------


@dataclasses.dataclass
class Streams:
    server: GrpcServer
    channel: Any
    repository: Path

    @property
    def infer(self) -> Any:
        return grpc_service_pb2_grpc.GRPCInferenceServiceStub(self.channel)

    @property
    def simple(self) -> Any:
        return simple_pb2_grpc.InferenceServiceStub(self.channel)


@pytest.fixture
async def serve(stream_repo: Path, node_factory: NodeFactory) -> AsyncIterator[Callable[..., Any]]:
    """``await serve(**settings_sections)``: a gRPC server over the streaming models."""
    running: list[Streams] = []

    async def make(**sections: dict[str, Any]) -> Streams:
        sections.setdefault("server", {})["grpc_port"] = 0
        node = node_factory(stream_repo, **sections)
        await node.start()
        server = await start_grpc(node, node.settings)
        made = Streams(server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}"), stream_repo)
        running.append(made)
        return made

    yield make
    for made in running:
        await made.channel.close()
        await made.server.stop(0)


async def test_a_client_that_cancels_stops_the_generator(serve: Callable[..., Any]) -> None:
    served = await serve()
    call = served.infer.ModelStreamInfer()
    await call.write(count_request("grpc-gone", 1000, 10))
    for expected in range(3):
        response = await call.read()
        raw = response.infer_response.raw_output_contents[0]
        assert from_binary("i", "INT32", (1,), raw).tolist() == [expected]
    call.cancel()
    await until(lambda: "closed" in steps(served.repository, "grpc-gone"), 10, "the close")
    assert len(steps(served.repository, "grpc-gone")) < 100


async def test_shutdown_sends_what_is_owed_then_unavailable(serve: Callable[..., Any]) -> None:
    served = await serve()
    call = served.infer.ModelStreamInfer()
    await call.write(count_request("grpc-drain", 3, 100))
    first = await call.read()
    assert not first.error_message
    stopping = asyncio.ensure_future(served.server.stop(10))
    rest = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        while True:
            rest.append(await call.read())
    await stopping
    assert len(rest) == 2  # the partials of the request already read
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "server shutting down"


# -- limits, on both streams --------------------------------------------------------------------

STREAMS = ["ModelStreamInfer", "PredictStream"]


def simple_stream(served: Streams, method: str) -> Any:
    if method == "ModelStreamInfer":
        return served.infer.ModelStreamInfer()
    return served.simple.PredictStream()


def tiny_message(method: str, rows: int = 1) -> Any:
    x = np.ones((rows, 4), dtype=np.float32)
    if method == "ModelStreamInfer":
        return pb.ModelInferRequest(
            model_name="tiny",
            inputs=[Input(name="input", datatype="FP32", shape=[rows, 4])],
            raw_input_contents=[x.tobytes()],
        )
    return simple_pb2.PredictRequest(model_name="tiny", inputs=x.reshape(-1).tolist())


async def read_until_status(call: Any) -> tuple[list[Any], grpc.StatusCode, str]:
    received = []
    try:
        while (response := await call.read()) is not grpc.aio.EOF:
            received.append(response)
    except grpc.aio.AioRpcError as exc:
        return received, exc.code(), exc.details() or ""
    return received, grpc.StatusCode.OK, ""


@pytest.mark.parametrize("method", STREAMS)
async def test_an_idle_stream_ends_deadline_exceeded(
    serve: Callable[..., Any], method: str
) -> None:
    served = await serve(stream={"idle_timeout_s": 0.3})
    call = simple_stream(served, method)
    await call.write(tiny_message(method))
    received, code, details = await read_until_status(call)
    assert len(received) == 1
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details == "idle timeout (0.3 s without a message)"


@pytest.mark.parametrize("method", STREAMS)
async def test_past_the_message_rate_the_stream_ends_resource_exhausted(
    serve: Callable[..., Any], method: str
) -> None:
    served = await serve(stream={"max_messages_per_second": 3})
    call = simple_stream(served, method)
    for _ in range(8):
        await call.write(tiny_message(method))
    received, code, details = await read_until_status(call)
    assert len(received) == 3  # a burst of a second's worth, answered
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details == "message rate limit exceeded"


@pytest.mark.parametrize("method", STREAMS)
async def test_a_message_over_the_size_limit_ends_resource_exhausted(
    serve: Callable[..., Any], method: str
) -> None:
    served = await serve(safeguards={"max_request_size_mb": 0.01})
    call = simple_stream(served, method)
    await call.write(tiny_message(method, rows=1000))  # 16 kB of floats
    received, code, _ = await read_until_status(call)
    assert received == []
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("method", STREAMS)
async def test_at_most_max_in_flight_requests_of_a_stream_run_at_once(
    serve: Callable[..., Any], method: str
) -> None:
    served = await serve(stream={"max_in_flight": 3})
    if method == "ModelStreamInfer":
        requests = [busy_request(float(n)) for n in range(10)]
        responses = [r async for r in served.infer.ModelStreamInfer(iter(requests))]
        assert [r.infer_response.model_name for r in responses] == ["busy"] * 10
    else:
        simple = [simple_pb2.PredictRequest(model_name="busy", inputs=[n]) for n in range(10)]
        answers = [r async for r in served.simple.PredictStream(iter(simple))]
        assert [list(r.predictions) for r in answers] == [[n] for n in range(10)]
    assert busy_max(served.repository) == 3

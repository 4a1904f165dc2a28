"""Triton's Python client examples (triton-inference-server/client, src/python/examples),
reproduced against a real inferd with Python models that mimic Triton's test models
(tests/compat/models.py). Each test names the example it reproduces and makes the calls it
makes, with its checks; where an example compares something with Triton's own wording
(its server name, an error message, the size of Triton's example repository) the test
says what inferd answers instead. docs/compatibility.md lists them all.
"""

from __future__ import annotations

import asyncio
import json
import queue
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
import tritonclient.http as httpclient
import tritonclient.http.aio as httpaio
import tritonclient.utils.shared_memory as shm
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, serialize_byte_tensor

from tests.compat.models import write_models
from tests.conftest import ServerProcess

IN0 = np.arange(16, dtype=np.int32).reshape(1, 16)
IN1 = np.ones((1, 16), dtype=np.int32)
VALUES = [11, 7, 5, 3, 2, 0, 1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = write_models(
        tmp_path_factory.mktemp("examples"),
        "simple",
        "simple_string",
        "simple_identity",
        "simple_sequence",
        "simple_dyna_sequence",
        "simple_string_dyna_sequence",
        "repeat_int32",
        "classifier",
    )
    process = ServerProcess(root, env={"INFERENCE_SERVER__ALLOW_LOCAL_ADMIN": "true"})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpclient.InferenceServerClient]:
    with httpclient.InferenceServerClient(server.url.removeprefix("http://")) as client:
        yield client


@pytest.fixture
def grpc_client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_target) as client:
        yield client


def simple_inputs(module: Any, datatype: str = "INT32") -> list[Any]:
    inputs = [
        module.InferInput("INPUT0", [1, 16], datatype),
        module.InferInput("INPUT1", [1, 16], datatype),
    ]
    if datatype == "INT32":
        inputs[0].set_data_from_numpy(IN0)
        inputs[1].set_data_from_numpy(IN1)
    else:
        inputs[0].set_data_from_numpy(np.array([[str(v).encode() for v in IN0[0]]], dtype=object))
        inputs[1].set_data_from_numpy(np.array([[str(v).encode() for v in IN1[0]]], dtype=object))
    return inputs


def check_sum_diff(results: Any, strings: bool = False) -> None:
    out0, out1 = results.as_numpy("OUTPUT0"), results.as_numpy("OUTPUT1")
    if strings:
        out0, out1 = out0.astype(np.int32), out1.astype(np.int32)
    np.testing.assert_array_equal(out0, IN0 + IN1)
    np.testing.assert_array_equal(out1, IN0 - IN1)


# -- inference --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_simple_infer_client(
    protocol: str,
    http: httpclient.InferenceServerClient,
    grpc_client: grpcclient.InferenceServerClient,
) -> None:
    """simple_http_infer_client.py, simple_grpc_infer_client.py (without the optional
    request/response compression flags)."""
    client: Any = http if protocol == "http" else grpc_client
    module: Any = httpclient if protocol == "http" else grpcclient
    outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("OUTPUT1")]
    check_sum_diff(client.infer("simple", simple_inputs(module), outputs=outputs))
    stats = client.get_inference_statistics(model_name="simple")
    count = len(stats["model_stats"]) if protocol == "http" else len(stats.model_stats)
    assert count == 1
    check_sum_diff(client.infer("simple", simple_inputs(module)))  # no outputs named


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_simple_string_infer_client(
    protocol: str,
    http: httpclient.InferenceServerClient,
    grpc_client: grpcclient.InferenceServerClient,
) -> None:
    """simple_http_string_infer_client.py, simple_grpc_string_infer_client.py: sums of
    numbers written as strings, and simple_identity echoing strings with NUL bytes and a
    fixed-width np.bytes_ array."""
    client: Any = http if protocol == "http" else grpc_client
    module: Any = httpclient if protocol == "http" else grpcclient
    check_sum_diff(client.infer("simple_string", simple_inputs(module, "BYTES")), strings=True)
    for array in (
        np.array([[b"he\x00llo"] * 16], dtype=object),
        np.array([[b"abc", b"de"]], dtype=np.bytes_),
    ):
        tensor = module.InferInput("INPUT0", list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array)
        got = client.infer("simple_identity", [tensor]).as_numpy("OUTPUT0")
        assert got.astype(np.bytes_).tolist() == array.astype(np.bytes_).tolist()


def test_simple_http_async_infer_client(server: ServerProcess) -> None:
    """simple_http_async_infer_client.py: async_infer, results gathered later."""
    url = server.url.removeprefix("http://")
    with httpclient.InferenceServerClient(url, concurrency=4) as client:
        pending = [client.async_infer("simple", simple_inputs(httpclient)) for _ in range(4)]
        for request in pending:
            check_sum_diff(request.get_result())


def test_simple_grpc_async_infer_client(grpc_client: grpcclient.InferenceServerClient) -> None:
    """simple_grpc_async_infer_client.py: async_infer with a callback."""
    done: queue.Queue[Any] = queue.Queue()
    grpc_client.async_infer(
        "simple", simple_inputs(grpcclient), lambda result, error: done.put((result, error))
    )
    result, error = done.get(timeout=30)
    assert error is None
    check_sum_diff(result)


def test_simple_aio_infer_clients(server: ServerProcess) -> None:
    """simple_http_aio_infer_client.py, simple_grpc_aio_infer_client.py (asyncio clients)."""

    async def run() -> None:
        async with httpaio.InferenceServerClient(server.url.removeprefix("http://")) as client:
            assert await client.is_server_live()
            check_sum_diff(await client.infer("simple", simple_inputs(httpaio)))
        async with grpcaio.InferenceServerClient(server.grpc_target) as aio:
            assert await aio.is_model_ready("simple")
            check_sum_diff(await aio.infer("simple", simple_inputs(grpcaio)))

    asyncio.run(run())


def test_simple_grpc_custom_args_client(server: ServerProcess) -> None:
    """simple_grpc_custom_args_client.py: channel arguments and a custom header."""
    channel_args = [
        ("grpc.max_send_message_length", 1024 * 1024),
        ("grpc.max_receive_message_length", 1024 * 1024),
        ("grpc.keepalive_time_ms", 2**31 - 1),
        ("grpc.keepalive_timeout_ms", 20000),
        ("grpc.keepalive_permit_without_calls", False),
        ("grpc.http2.max_pings_without_data", 2),
    ]
    with grpcclient.InferenceServerClient(server.grpc_target, channel_args=channel_args) as client:
        check_sum_diff(client.infer("simple", simple_inputs(grpcclient), headers={"test": "1"}))


def test_simple_grpc_keepalive_client(server: ServerProcess) -> None:
    """simple_grpc_keepalive_client.py: the example's keepalive options (its defaults)."""
    options = grpcclient.KeepAliveOptions(
        keepalive_time_ms=2**31 - 1,
        keepalive_timeout_ms=20000,
        keepalive_permit_without_calls=False,
        http2_max_pings_without_data=2,
    )
    with grpcclient.InferenceServerClient(server.grpc_target, keepalive_options=options) as client:
        check_sum_diff(client.infer("simple", simple_inputs(grpcclient), headers={"test": "1"}))


# -- health, metadata, model control -----------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_simple_health_metadata(
    protocol: str,
    http: httpclient.InferenceServerClient,
    grpc_client: grpcclient.InferenceServerClient,
) -> None:
    """simple_http_health_metadata.py, simple_grpc_health_metadata.py. The examples also
    compare the server's name with "triton" and the unknown-model error with Triton's
    "Request for unknown model": inferd answers "inferd" and "model '...' is not known"."""
    client: Any = http if protocol == "http" else grpc_client
    extra = {"query_params": {"test_1": 1, "test_2": 2}} if protocol == "http" else {}
    assert client.is_server_live(**extra)
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    metadata = client.get_server_metadata()
    name = metadata["name"] if protocol == "http" else metadata.name
    assert name == "inferd"
    model = client.get_model_metadata("simple", **extra)
    assert (model["name"] if protocol == "http" else model.name) == "simple"
    with pytest.raises(InferenceServerException, match="model 'wrong_model_name' is not known"):
        client.get_model_metadata("wrong_model_name")
    if protocol == "grpc":
        assert len(client.get_inference_statistics("simple").model_stats) == 1


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_simple_model_control(
    protocol: str,
    http: httpclient.InferenceServerClient,
    grpc_client: grpcclient.InferenceServerClient,
) -> None:
    """simple_http_model_control.py, simple_grpc_model_control.py. The examples expect the
    8 models of Triton's example repository and Triton's error wording ("failed to load",
    "failed to poll from model repository", INTERNAL for files): the test checks inferd's
    (its repository's models; 400/INVALID_ARGUMENT naming the problem)."""
    client: Any = http if protocol == "http" else grpc_client
    index = client.get_model_repository_index()
    assert len(index if protocol == "http" else index.models) == 8
    client.load_model("simple")
    assert client.is_model_ready("simple")
    with pytest.raises(InferenceServerException, match="is not JSON"):
        client.load_model("simple", config='"parameters": {"config": {{"max_batch_size": "16"}}}')
    client.load_model("simple", config='{"max_batch_size":"16"}')
    config = client.get_model_config("simple")
    assert (config["max_batch_size"] if protocol == "http" else config.config.max_batch_size) == 16
    client.unload_model("simple")
    assert not client.is_model_ready("simple")
    files = {"file:" + "A" * 256: b"a"}
    with pytest.raises(InferenceServerException, match="files cannot be sent with a load"):
        client.load_model("simple", config="{}", files=files)
    assert client.is_server_live()
    with pytest.raises(InferenceServerException, match="wrong_model_name"):
        client.load_model("wrong_model_name")
    client.load_model("simple")  # as model.yaml says again
    assert client.is_model_ready("simple")


# -- system shared memory ----------------------------------------------------------------------


def _regions(tag: str, sizes: list[int]) -> list[Any]:
    return [
        shm.create_shared_memory_region(f"{tag}{i}", f"/inferd_{tag}{i}", size)
        for i, size in enumerate(sizes)
    ]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("strings", [False, True], ids=["int", "string"])
def test_simple_shm_client(
    protocol: str,
    strings: bool,
    http: httpclient.InferenceServerClient,
    grpc_client: grpcclient.InferenceServerClient,
) -> None:
    """simple_{http,grpc}_shm_client.py and simple_{http,grpc}_shm_string_client.py:
    inputs and outputs in system shared memory (the examples also unregister CUDA shared
    memory, which inferd does not serve: that call is left out)."""
    client: Any = http if protocol == "http" else grpc_client
    module: Any = httpclient if protocol == "http" else grpcclient
    tag = uuid.uuid4().hex[:8]
    client.unregister_system_shared_memory()
    if strings:
        data = [
            serialize_byte_tensor(np.array([str(v).encode() for v in a[0]], dtype=object)).item()
            for a in (IN0, IN1)
        ]
        model, datatype, out_size = "simple_string", "BYTES", 1024
    else:
        data = [IN0.tobytes(), IN1.tobytes()]
        model, datatype, out_size = "simple", "INT32", 64
    handles = _regions(tag, [len(data[0]), len(data[1]), out_size, out_size])
    try:
        for i in range(len(handles)):
            size = len(data[i]) if i < 2 else out_size
            client.register_system_shared_memory(f"{tag}{i}", f"/inferd_{tag}{i}", size)
        for i in (0, 1):
            shm.set_shared_memory_region(handles[i], [np.frombuffer(data[i], dtype=np.uint8)])
        inputs = [module.InferInput(f"INPUT{i}", [1, 16], datatype) for i in (0, 1)]
        outputs = [module.InferRequestedOutput(f"OUTPUT{i}") for i in (0, 1)]
        for i in (0, 1):
            inputs[i].set_shared_memory(f"{tag}{i}", len(data[i]))
            outputs[i].set_shared_memory(f"{tag}{i + 2}", out_size)
        results = client.infer(model, inputs, outputs=outputs)
        for i, expected in ((0, IN0 + IN1), (1, IN0 - IN1)):
            output = results.get_output(f"OUTPUT{i}")
            shape = output["shape"] if protocol == "http" else list(output.shape)
            dtype = np.object_ if strings else np.int32
            got = shm.get_contents_as_numpy(handles[i + 2], dtype, shape)
            np.testing.assert_array_equal(got.astype(np.int32), expected)
        status = client.get_system_shared_memory_status()
        assert len(status if protocol == "http" else status.regions) == 4
        client.unregister_system_shared_memory()
    finally:
        for handle in handles:
            shm.destroy_shared_memory_region(handle)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_reuse_infer_objects_client(
    protocol: str,
    http: httpclient.InferenceServerClient,
    grpc_client: grpcclient.InferenceServerClient,
) -> None:
    """reuse_infer_objects_client.py: the same input and output objects used with shared
    memory, then with data in the request (unset_shared_memory), then with shared memory."""
    client: Any = http if protocol == "http" else grpc_client
    module: Any = httpclient if protocol == "http" else grpcclient
    tag = uuid.uuid4().hex[:8]
    handles = _regions(tag, [64, 64, 64, 64])
    try:
        for i in range(4):
            client.register_system_shared_memory(f"{tag}{i}", f"/inferd_{tag}{i}", 64)
        shm.set_shared_memory_region(handles[0], [IN0[0]])
        shm.set_shared_memory_region(handles[1], [IN1[0]])
        inputs = [module.InferInput(f"INPUT{i}", [1, 16], "INT32") for i in (0, 1)]
        outputs = [module.InferRequestedOutput(f"OUTPUT{i}") for i in (0, 1)]
        for round_ in ("shm", "data", "shm"):
            if round_ == "shm":
                for i in (0, 1):
                    inputs[i].set_shared_memory(f"{tag}{i}", 64)
                    outputs[i].set_shared_memory(f"{tag}{i + 2}", 64)
            else:
                inputs[0].set_data_from_numpy(IN0)
                inputs[1].set_data_from_numpy(IN1)
                for output in outputs:
                    output.unset_shared_memory()
            results = client.infer("simple", inputs, outputs=outputs)
            if round_ == "shm":
                got = shm.get_contents_as_numpy(handles[2], np.int32, [1, 16])
                np.testing.assert_array_equal(got, IN0 + IN1)
            else:
                check_sum_diff(results)
        client.unregister_system_shared_memory()
    finally:
        for handle in handles:
            shm.destroy_shared_memory_region(handle)


# -- sequences ---------------------------------------------------------------------------------


def expected(values: list[int], dyna: bool, sid: int, start: int) -> list[int]:
    """What the examples check of simple_sequence / simple_dyna_sequence (int ids)."""
    out = [start + 1, *values]
    if dyna:
        out[-1] += sid
    return out


@pytest.mark.parametrize("dyna", [False, True], ids=["simple_sequence", "dyna"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_simple_sequence_sync_infer_client(
    protocol: str,
    dyna: bool,
    http: httpclient.InferenceServerClient,
    grpc_client: grpcclient.InferenceServerClient,
) -> None:
    """simple_http_sequence_sync_infer_client.py, simple_grpc_sequence_sync_infer_client.py
    (and their -d "dyna" runs): two integer sequences and a string one, one after another."""
    client: Any = http if protocol == "http" else grpc_client
    module: Any = httpclient if protocol == "http" else grpcclient
    int_model = "simple_dyna_sequence" if dyna else "simple_sequence"
    string_model = "simple_string_dyna_sequence" if dyna else "simple_sequence"
    string_id = "1002" if dyna else str(uuid.uuid4())

    def send(model: str, values: list[int], sid: int | str) -> list[int]:
        results = []
        for count, value in enumerate(values, 1):
            tensor = module.InferInput("INPUT", [1, 1], "INT32")
            tensor.set_data_from_numpy(np.full((1, 1), value, dtype=np.int32))
            result = client.infer(
                model,
                [tensor],
                outputs=[module.InferRequestedOutput("OUTPUT")],
                sequence_id=sid,
                sequence_start=count == 1,
                sequence_end=count == len(values),
            )
            results.append(int(result.as_numpy("OUTPUT")[0][0]))
        return results

    negated = [-v for v in VALUES]
    assert send(int_model, [0, *VALUES], 1000) == expected(VALUES, dyna, 1000, 0)
    assert send(int_model, [100, *negated], 1001) == expected(negated, dyna, 1001, 100)
    strings = send(string_model, [20, *negated], string_id)
    if dyna:  # a running total, plus the id at the end
        totals = list(np.cumsum([20, *negated]))
        totals[-1] += 1002
        assert strings == totals
    else:
        assert strings == [21, *negated]


@pytest.mark.parametrize("dyna", [False, True], ids=["simple_sequence", "dyna"])
def test_simple_grpc_sequence_stream_infer_client(
    dyna: bool, grpc_client: grpcclient.InferenceServerClient
) -> None:
    """simple_grpc_sequence_stream_infer_client.py: three sequences over one ModelStreamInfer
    stream, answers told apart by their request id."""
    answers: queue.Queue[Any] = queue.Queue()
    int_model = "simple_dyna_sequence" if dyna else "simple_sequence"
    string_model = "simple_string_dyna_sequence" if dyna else "simple_sequence"
    string_id = "1002" if dyna else str(uuid.uuid4())
    grpc_client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        sent = {
            1000: [0, *VALUES],
            1001: [100, *[-v for v in VALUES]],
            string_id: [20, *[-v for v in VALUES]],
        }
        for sid, values in sent.items():
            model = string_model if sid == string_id else int_model
            for count, value in enumerate(values, 1):
                tensor = grpcclient.InferInput("INPUT", [1, 1], "INT32")
                tensor.set_data_from_numpy(np.full((1, 1), value, dtype=np.int32))
                grpc_client.async_stream_infer(
                    model,
                    [tensor],
                    outputs=[grpcclient.InferRequestedOutput("OUTPUT")],
                    request_id=f"{sid}_{count}",
                    sequence_id=sid,
                    sequence_start=count == 1,
                    sequence_end=count == len(values),
                )
        got: dict[str, list[int]] = {str(k): [] for k in sent}
        for _ in range(sum(len(v) for v in sent.values())):
            result, error = answers.get(timeout=30)
            assert error is None, error
            got[result.get_response().id.split("_")[0]].append(int(result.as_numpy("OUTPUT")[0][0]))
    finally:
        grpc_client.stop_stream()
    assert got["1000"] == expected(VALUES, dyna, 1000, 0)
    assert got["1001"] == expected([-v for v in VALUES], dyna, 1001, 100)


def test_simple_grpc_aio_sequence_stream_infer_client(server: ServerProcess) -> None:
    """simple_grpc_aio_sequence_stream_infer_client.py: the asyncio client's stream_infer."""

    async def run() -> list[int]:
        async with grpcaio.InferenceServerClient(server.grpc_target) as client:

            async def requests() -> Any:
                values = [0, *VALUES]
                for count, value in enumerate(values, 1):
                    tensor = grpcaio.InferInput("INPUT", [1, 1], "INT32")
                    tensor.set_data_from_numpy(np.full((1, 1), value, dtype=np.int32))
                    yield {
                        "model_name": "simple_sequence",
                        "inputs": [tensor],
                        "outputs": [grpcaio.InferRequestedOutput("OUTPUT")],
                        "request_id": f"2000_{count}",
                        "sequence_id": 2000,
                        "sequence_start": count == 1,
                        "sequence_end": count == len(values),
                    }

            out = []
            async for result, error in client.stream_infer(requests()):
                assert error is None, error
                out.append(int(result.as_numpy("OUTPUT")[0][0]))
            return out

    assert asyncio.run(run()) == expected(VALUES, False, 2000, 0)


# -- decoupled, classification, raw stubs -------------------------------------------------------


def test_simple_grpc_custom_repeat(grpc_client: grpcclient.InferenceServerClient) -> None:
    """simple_grpc_custom_repeat.py: a decoupled model answers each IN element apart."""
    answers: queue.Queue[Any] = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        inputs = [
            grpcclient.InferInput("IN", [10], "INT32"),
            grpcclient.InferInput("DELAY", [10], "UINT32"),
            grpcclient.InferInput("WAIT", [1], "UINT32"),
        ]
        inputs[0].set_data_from_numpy(np.arange(4, 14, dtype=np.int32))
        inputs[1].set_data_from_numpy(np.zeros(10, dtype=np.uint32))
        inputs[2].set_data_from_numpy(np.zeros(1, dtype=np.uint32))
        grpc_client.async_stream_infer(
            "repeat_int32", inputs, outputs=[grpcclient.InferRequestedOutput("OUT")]
        )
        got = []
        for _ in range(10):
            result, error = answers.get(timeout=30)
            assert error is None, error
            got.append(int(result.as_numpy("OUT")[0]))
    finally:
        grpc_client.stop_stream()
    assert got == list(range(4, 14))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_image_client_classification(
    protocol: str,
    http: httpclient.InferenceServerClient,
    grpc_client: grpcclient.InferenceServerClient,
) -> None:
    """image_client.py / grpc_image_client.py's model checks and classification: one input
    with its format (FORMAT_NCHW), one FP32 output, class_count; results parsed as the
    example does ("score:index:label"). The image itself (PIL) is left out."""
    client: Any = http if protocol == "http" else grpc_client
    module: Any = httpclient if protocol == "http" else grpcclient
    config = client.get_model_config("classifier")
    if protocol == "http":
        assert config["input"][0]["format"] == "FORMAT_NCHW"
    else:
        assert config.config.input[0].format == 2  # ModelInput.FORMAT_NCHW
    image = np.zeros((1, 3, 2, 2), dtype=np.float32)
    image.reshape(-1)[:4] = [0.1, 0.7, 0.05, 0.15]
    tensor = module.InferInput("INPUT", [1, 3, 2, 2], "FP32")
    tensor.set_data_from_numpy(image)
    results = client.infer(
        "classifier", [tensor], outputs=[module.InferRequestedOutput("OUTPUT", class_count=3)]
    )
    rows = results.as_numpy("OUTPUT")
    parsed = [
        (float(c[0]), int(c[1]), c[2])
        for c in (r.decode().split(":") if isinstance(r, bytes) else r.split(":") for r in rows[0])
    ]
    assert parsed == [(0.7, 1, "terrier"), (0.15, 3, "trout"), (0.1, 0, "tabby")]


def test_grpc_client_and_explicit_contents(server: ServerProcess) -> None:
    """grpc_client.py, grpc_explicit_int_content_client.py, grpc_explicit_int8_content_client.py,
    grpc_explicit_byte_content_client.py: the generated stubs with typed contents (the
    first calls Triton's densenet_onnx; here the same calls go to simple)."""
    channel = grpc.insecure_channel(server.grpc_target)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    try:
        assert stub.ServerLive(service_pb2.ServerLiveRequest()).live
        assert stub.ServerReady(service_pb2.ServerReadyRequest()).ready
        assert stub.ModelReady(service_pb2.ModelReadyRequest(name="simple", version="")).ready
        assert stub.ServerMetadata(service_pb2.ServerMetadataRequest()).name == "inferd"
        assert stub.ModelConfig(service_pb2.ModelConfigRequest(name="simple")).config.max_batch_size
        request = service_pb2.ModelInferRequest(model_name="simple", id="my request id")
        for name, values in (("INPUT0", IN0), ("INPUT1", IN1)):
            tensor = request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
            tensor.contents.int_contents[:] = values[0].tolist()
        response = stub.ModelInfer(request)
        assert response.id == "my request id"
        out0 = np.frombuffer(response.raw_output_contents[0], dtype=np.int32)
        np.testing.assert_array_equal(out0, (IN0 + IN1)[0])
        strings = service_pb2.ModelInferRequest(model_name="simple_string")
        for name, values in (("INPUT0", IN0), ("INPUT1", IN1)):
            tensor = strings.inputs.add(name=name, datatype="BYTES", shape=[1, 16])
            tensor.contents.bytes_contents[:] = [str(v).encode() for v in values[0]]
        answer = stub.ModelInfer(strings)
        assert answer.outputs[0].name == "OUTPUT0"
        assert json.dumps(answer.outputs[0].shape[:]) == "[1, 16]"
    finally:
        channel.close()

"""Hostile payloads against a real server: each answered with its exact 4xx (REST,
WebSocket) or INVALID_ARGUMENT (gRPC), never a 5xx; the heavy ones refused or served while
``/healthz`` keeps answering within budget; the server live and correct afterwards."""

from __future__ import annotations

import json
import random
import socket
import string
from collections.abc import Iterator
from typing import Any, BinaryIO

import grpc
import httpx
import pytest
import websockets.sync.client

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.abuse.conftest import FIGURES, Requester, assert_probe_fast
from tests.conftest import ServerProcess

Input = pb.ModelInferRequest.InferInputTensor
LONG = "n" * 20_000
CLIPPED = "n" * 64 + "\u2026"


@pytest.fixture(scope="module")
def client(abuse_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=abuse_server.url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def stub(abuse_server: ServerProcess) -> Iterator[Any]:
    with grpc.insecure_channel(
        abuse_server.grpc_target, options=[("grpc.max_send_message_length", -1)]
    ) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


#: Stands for ``["a"]`` nested 990 deep (json.dumps cannot write it: recursion).
DEEP = "__deep__"
DEEP_JSON = '"__deep__"'
DEEP_TEXT = "[" * 989 + '["a"]' + "]" * 989


def dumps(doc: Any) -> str:
    """``json.dumps``, with :data:`DEEP` written as 990 nested lists."""
    return json.dumps(doc).replace(DEEP_JSON, DEEP_TEXT)


#: (id, model, input, the error's exact message). Each goes over REST and WebSocket.
V2_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "zero-elements-2**62",
        "tiny",
        tensor("input", "FP32", [0, 2**62, 2**62], []),
        "input 'input': shape [0, 4611686018427387904, 4611686018427387904] is too large "
        "(its dimensions may multiply to at most 281474976710656)",
    ),
    (
        "zero-elements-2**64-1",
        "tiny",
        tensor("input", "FP32", [0, 2**64 - 1], []),
        "input 'input': shape [0, 18446744073709551615] is too large "
        "(its dimensions may multiply to at most 281474976710656)",
    ),
    (
        "ints-beyond-int64",
        "ints",
        tensor("x", "INT64", [1, 2], [-1, 18446744073709551615]),
        "input 'x': value out of range for INT64 [-9223372036854775808, 9223372036854775807]",
    ),
    (
        "bytes-nested-990",
        "texts",
        tensor("s", "BYTES", [1, 1], DEEP),
        "input 's': 'data' is nested deeper than 32 levels",
    ),
    (
        "bool-as-fp32",
        "tiny",
        tensor("input", "FP32", [1, 4], [True, 1, 2, 3]),
        "input 'input': FP32 data must be numbers",
    ),
    (
        "float-as-int64",
        "ints",
        tensor("x", "INT64", [1, 2], [1.0, 2]),
        "input 'x': INT64 data must be integers",
    ),
    (
        "deeper-than-shape",
        "tiny",
        tensor("input", "FP32", [1, 4], [[[1], [2], [3], [4]]]),
        "input 'input': 'data' is nested as [1, 4, 1]; shape is [1, 4]",
    ),
    (
        "rows-unlike-shape",
        "tiny",
        tensor("input", "FP32", [2, 4], [[1, 2, 3, 4], [1, 2]]),
        "input 'input': 'data' is not a regular array: its rows differ at depth 1",
    ),
    (
        "long-input-name",
        "tiny",
        tensor(LONG, "FP32", [1, 4], [1, 2, 3, 4]),
        f"unknown input '{CLIPPED}' for model 'tiny'; expected ['input']",
    ),
    (
        "long-datatype",
        "tiny",
        tensor("input", LONG, [1, 4], [1, 2, 3, 4]),
        f"input 'input': unknown datatype '{CLIPPED[1:]}; expected one of BOOL, UINT8, UINT16, "
        "UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES",
    ),
]


def assert_serving(client: httpx.Client, probe: Requester) -> None:
    """``/healthz`` answered within budget all along; the server serves correctly."""
    assert_probe_fast(probe)
    answer = client.post("/predict", json={"inputs": [1, 2, 3, 4]})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["predictions"]) == 2
    assert client.get("/ready").status_code == 200


@pytest.mark.parametrize(
    ("model", "item", "message"), [c[1:] for c in V2_CASES], ids=[c[0] for c in V2_CASES]
)
def test_rest_answers_400(
    client: httpx.Client, model: str, item: dict[str, Any], message: str, probe: Requester
) -> None:
    answer = client.post(f"/v2/models/{model}/infer", content=dumps({"inputs": [item]}))
    assert (answer.status_code, answer.json()["error"]) == (400, message)
    assert_serving(client, probe)


def test_websocket_answers_400(
    abuse_server: ServerProcess, client: httpx.Client, probe: Requester
) -> None:
    url = abuse_server.url.replace("http", "ws") + "/predict/stream"
    headers = {"X-Request-Id": "abuse-ws"}  # every error answer carries the stream's id
    with websockets.sync.client.connect(url, max_size=None, additional_headers=headers) as ws:
        for seq, (_, model, item, message) in enumerate(V2_CASES, 1):
            ws.send(dumps({"model_name": model, "inputs": [item]}))
            assert json.loads(ws.recv()) == {
                "error": message,
                "code": 400,
                "seq": seq,
                "request_id": "abuse-ws",
            }
        simple = [
            ({"inputs": [True, 1, 2, 3]}, "input 'input': FP32 data must be numbers"),
            (
                {"batch": [[1, 2, 3, 4], [1, 2]]},
                "input 'input': 'data' is not a regular array: its rows differ at depth 1",
            ),
            ({"inputs": DEEP}, "input 'input': 'data' is nested deeper than 32 levels"),
            (
                {"inputs": [1, 2, 3, 4], "model": LONG},
                f"model name '{CLIPPED[1:]} is not allowed: use letters, digits, '_', '-' and '.', starting with a letter or digit, at most 128 characters",
            ),
        ]
        for seq, (doc, message) in enumerate(simple, len(V2_CASES) + 1):
            ws.send(dumps(doc))
            assert json.loads(ws.recv()) == {
                "error": message,
                "code": 400,
                "seq": seq,
                "request_id": "abuse-ws",
            }
        ws.send(json.dumps({"inputs": [1, 2, 3, 4]}))
        assert len(json.loads(ws.recv())["predictions"]) == 2
    assert_serving(client, probe)


def grpc_error(call: Any, *args: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)
    error: Any = caught.value
    return error.code(), error.details()


def infer_request(model: str, name: str, datatype: str, shape: list[int], raw: list[bytes]) -> Any:
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[Input(name=name, datatype=datatype, shape=shape)],
        raw_input_contents=raw,
    )


GRPC_CASES: list[tuple[str, Any, str]] = [
    (
        "raw-shorter-than-shape",
        infer_request("tiny", "input", "FP32", [1, 4], [b"\0" * 15]),
        "input 'input': FP32 shape [1, 4] needs 16 bytes, got 15",
    ),
    (
        "raw-bytes-overrun",
        infer_request("texts", "s", "BYTES", [1, 1], [b"\xff\x00\x00\x00ab"]),
        "input 's': BYTES element 0 overruns the buffer",
    ),
    (
        "raw-more-entries-than-inputs",
        infer_request("tiny", "input", "FP32", [1, 4], [b"\0" * 16, b""]),
        "raw_input_contents has 2 entries for 1 inputs; send one per input, in the order of inputs",
    ),
    (
        "zero-elements-2**62",
        infer_request("tiny", "input", "FP32", [0, 2**62, 2**62], [b""]),
        "input 'input': shape [0, 4611686018427387904, 4611686018427387904] is too large "
        "(its dimensions may multiply to at most 281474976710656)",
    ),
    (
        "long-model-name",
        infer_request("m" * 10_000, "input", "FP32", [1, 4], [b"\0" * 16]),
        "model name '" + "m" * 63 + "\u2026 is not allowed: use letters, digits, '_', '-' and '.', "
        "starting with a letter or digit, at most 128 characters",
    ),
    (
        "long-input-name",
        infer_request("tiny", LONG, "FP32", [1, 4], [b"\0" * 16]),
        f"unknown input '{CLIPPED}' for model 'tiny'; expected ['input']",
    ),
]


@pytest.mark.parametrize(
    ("request_", "message"), [c[1:] for c in GRPC_CASES], ids=[c[0] for c in GRPC_CASES]
)
def test_grpc_answers_invalid_argument(
    stub: Any, client: httpx.Client, request_: Any, message: str, probe: Requester
) -> None:
    assert grpc_error(stub.ModelInfer, request_) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert_serving(client, probe)


def test_grpc_malformed_protobuf_is_invalid_argument(
    abuse_server: ServerProcess, client: httpx.Client, probe: Requester
) -> None:
    with grpc.insecure_channel(abuse_server.grpc_target) as channel:
        raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        for garbage in (b"\x0a\xff\xff\xff\xff\x0f", b"\xff" * 64, bytes(range(256))):
            assert grpc_error(raw, garbage) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "malformed request: not a valid inference.ModelInferRequest message",
            )
    assert_serving(client, probe)


# -- heavy payloads, with /healthz measured meanwhile -------------------------------------------


def zero_length_strings(count: int) -> bytes:
    return b"\0\0\0\0" * count


def binary_body(header: dict[str, Any], blob: bytes) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(header).encode()
    return raw + blob, {"Inference-Header-Content-Length": str(len(raw))}


def test_16mb_binary_bytes_to_an_fp32_model_is_refused_from_its_header(
    abuse_server: ServerProcess, client: httpx.Client, probe: Requester
) -> None:
    count = 4_000_000
    header = {
        "inputs": [
            {
                "name": "input",
                "datatype": "BYTES",
                "shape": [1, count],
                "parameters": {"binary_data_size": 4 * count},
            }
        ]
    }
    body, headers = binary_body(header, zero_length_strings(count))
    answer = client.post("/v2/models/tiny/infer", content=body, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (
        400,
        "input 'input': expected datatype FP32, got BYTES",
    )
    assert_serving(client, probe)


def test_16mb_grpc_bytes_to_an_fp32_model_is_refused_from_its_header(
    abuse_server: ServerProcess, stub: Any, client: httpx.Client, probe: Requester
) -> None:
    count = 4_000_000
    request = infer_request("tiny", "input", "BYTES", [1, count], [zero_length_strings(count)])
    error = grpc_error(stub.ModelInfer, request)
    assert error == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input 'input': expected datatype FP32, got BYTES",
    )
    assert_serving(client, probe)


def test_16mb_binary_bytes_to_a_bytes_model_is_decoded_off_the_loop(
    abuse_server: ServerProcess, client: httpx.Client, probe: Requester
) -> None:
    count = 1_000_000
    element = (12).to_bytes(4, "little") + b"abcdefghijkl"
    header = {
        "inputs": [
            {
                "name": "s",
                "datatype": "BYTES",
                "shape": [1, count],
                "parameters": {"binary_data_size": 16 * count},
            }
        ]
    }
    body, headers = binary_body(header, element * count)
    answer = client.post("/v2/models/texts/infer", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [count]
    assert_serving(client, probe)


def test_16mb_json_is_refused_from_its_header(
    abuse_server: ServerProcess, client: httpx.Client, probe: Requester
) -> None:
    rows = 2_000_000
    item = tensor("input", "FP32", [rows, 4], [1] * (4 * rows))
    body = json.dumps({"inputs": [item]}, separators=(",", ":")).encode()
    assert 16_000_000 < len(body) < 16 * 2**20
    answer = client.post("/v2/models/tiny/infer", content=body)
    assert (answer.status_code, answer.json()["error"]) == (
        400,
        f"input 'input': batch dimension {rows} is outside 1..32 (max_batch_size)",
    )
    assert_serving(client, probe)


def test_large_json_is_parsed_off_the_loop_and_served(
    abuse_server: ServerProcess, client: httpx.Client, probe: Requester
) -> None:
    count = 1_000_000
    body = json.dumps({"inputs": [tensor("s", "BYTES", [1, count], ["abcdefghijk"] * count)]})
    answer = client.post("/v2/models/texts/infer", content=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [count]
    assert_serving(client, probe)


def test_a_big_predict_is_refused_from_its_shape(
    abuse_server: ServerProcess, client: httpx.Client, probe: Requester
) -> None:
    rows = 930_000
    body = json.dumps({"batch": [[1, 2, 3, 4]] * rows}).encode()
    answer = client.post("/predict", content=body)
    assert (answer.status_code, answer.json()["error"]) == (
        400,
        f"input 'input': batch dimension {rows} is outside 1..32 (max_batch_size)",
    )
    assert_serving(client, probe)


# -- metric labels ------------------------------------------------------------------------------


def random_name(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters, k=rng.randint(8, 64)))


def unknown_model_request(name: str) -> bytes:
    body = json.dumps({"inputs": [tensor("input", "FP32", [1, 4], [1, 2, 3, 4])]}).encode()
    return (
        b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (name.encode(), len(body), body)
    )


def read_status(answers: BinaryIO) -> int:
    """The status of the next answer on a connection, its head and body read."""
    status = int(answers.readline().split(b" ", 2)[1])
    length = 0
    while (line := answers.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    answers.read(length)
    return status


def pipelined(abuse_server: ServerProcess, requests: list[bytes], window: int = 50) -> list[int]:
    """The statuses of ``requests`` (whole HTTP/1.1 requests) sent on one connection,
    ``window`` at a time before reading their answers (HTTP/1.1 pipelining: the server
    answers them in order). Thousands a second with next to no work in the test process,
    where a client waiting for each answer spends most of the time in itself."""
    statuses = []
    with socket.create_connection(("127.0.0.1", abuse_server.http_port), timeout=30) as sock:
        answers = sock.makefile("rb")
        for start in range(0, len(requests), window):
            batch = requests[start : start + window]
            sock.sendall(b"".join(batch))
            statuses += [read_status(answers) for _ in batch]
    return statuses


def test_metrics_stay_bounded_under_random_model_names(
    abuse_server: ServerProcess, stub: Any, client: httpx.Client, probe: Requester
) -> None:
    rng = random.Random(8)
    ws_url = abuse_server.url.replace("http", "ws") + "/predict/stream"

    def unknown_names(count: int) -> None:
        requests = [unknown_model_request(random_name(rng)) for _ in range(count)]
        assert set(pipelined(abuse_server, requests)) == {404}
        for _ in range(count // 20):
            request = infer_request(random_name(rng), "input", "FP32", [1, 4], [b"\0" * 16])
            assert grpc_error(stub.ModelInfer, request)[0] == grpc.StatusCode.NOT_FOUND
        with websockets.sync.client.connect(ws_url) as ws:
            for _ in range(count // 20):
                ws.send(
                    json.dumps(
                        {
                            "model_name": random_name(rng),
                            "inputs": [tensor("input", "FP32", [1, 4], [1, 2, 3, 4])],
                        }
                    )
                )
                assert json.loads(ws.recv())["code"] == 404

    unknown_names(20)  # the one label set of unknown names, per protocol
    before = len(client.get("/metrics").content)
    unknown_names(10_000)
    after = len(client.get("/metrics").content)
    FIGURES.append(f"/metrics: {before} bytes before, {after} after 10,000 + 1,000 unknown names")
    assert abs(after - before) / before < 0.05
    assert_serving(client, probe)

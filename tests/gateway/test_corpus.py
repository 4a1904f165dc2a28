"""A hostile corpus against one real server: REST (raw sockets, so that requests can lie or
be smuggled exactly as written), gRPC and WebSocket.

Every case asserts the exact answer, then that the server is live and still serves a good
request correctly. Auth cases use ``server.admin_token`` (an admin key) and an infer key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import grpc
import httpx
import numpy as np
import pytest
import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.abuse.payloads_support import payload_repo
from tests.conftest import ServerProcess
from tests.gateway.corpus_support import (
    GOOD_INPUT,
    GOOD_ROW,
    assert_live_and_correct,
    exchange,
    post_json,
    request,
)

TOKEN: Final = "corpus-admin-token"
INFER_KEY: Final = "corpus-infer-key"
MAX_BYTES: Final = 262_144  # safeguards.max_request_size_mb: 0.25
SETTINGS: Final = {
    "server": {
        "admin_token": TOKEN,
        "api_keys": [f"corpus-infer:infer:{hashlib.sha256(INFER_KEY.encode()).hexdigest()}"],
    },
    "safeguards": {"max_request_size_mb": 0.25},
    "limits": {"http": {"body_timeout_s": 0.5}},
}
ADMIN: Final = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(example_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("corpus")
    repo = payload_repo(example_repo, root / "models")
    config = root / "inferd.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    process = ServerProcess(repo, "--config", str(config), "--default-model", "tiny")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def expected(client: httpx.Client) -> list[float]:
    """The correct answer to the good request, taken before any attack."""
    answer = client.post("/predict", json={"inputs": GOOD_ROW})
    assert answer.status_code == 200
    predictions: list[float] = answer.json()["predictions"]
    return predictions


# -- names: traversal, encoded traversal and over-long names in every position ------------------

#: Hostile names as they go on the wire (percent-encoded where a path carries them).
NAMES: Final = {
    "dotdot": "..",
    "encoded-dotdot": "%2e%2e",
    "mixed-case-encoded": "%2E%2e",
    "double-encoded": "%252e%252e",
    "backslash": "..%5c..%5cwindows",
    "nul": "tiny%00",
    "hidden": ".hidden",
    "overlong-utf8": "%c0%ae%c0%ae",
    "too-long": "m" * 200,
}
#: The same names as a JSON body or gRPC message carries them.
DECODED: Final = {
    "dotdot": "..",
    "encoded-dotdot": "%2e%2e",
    "mixed-case-encoded": "../../etc/passwd",
    "double-encoded": "%252e%252e",
    "backslash": "..\\..\\windows",
    "nul": "tiny\x00",
    "hidden": ".hidden",
    "overlong-utf8": "\u2025",
    "too-long": "m" * 200,
}

INFER_BODY: Final = {"inputs": [GOOD_INPUT]}
#: Name positions in a path: the request for a name, and the status a hostile one gets.
PATH_POSITIONS: Final = {
    "model-metadata": lambda n: request("GET", f"/v2/models/{n}"),
    "version-metadata": lambda n: request("GET", f"/v2/models/tiny/versions/{n}"),
    "model-ready": lambda n: request("GET", f"/v2/models/{n}/ready"),
    "model-config": lambda n: request("GET", f"/v2/models/{n}/config"),
    "model-stats": lambda n: request("GET", f"/v2/models/{n}/stats"),
    "v2-infer-model": lambda n: post_json(f"/v2/models/{n}/infer", INFER_BODY),
    "v2-infer-version": lambda n: post_json(f"/v2/models/tiny/versions/{n}/infer", INFER_BODY),
    "simple-predict-model": lambda n: post_json(f"/models/{n}/predict", {"inputs": GOOD_ROW}),
    "repository-load": lambda n: request("POST", f"/v2/repository/models/{n}/load", b"", ADMIN),
}
#: Name positions in a body.
BODY_POSITIONS: Final = {
    "predict-version": lambda n: post_json("/predict", {"inputs": GOOD_ROW, "model_version": n}),
    "infer-input-name": lambda n: post_json(
        "/v2/models/tiny/infer", {"inputs": [{**GOOD_INPUT, "name": n}]}
    ),
    "infer-output-name": lambda n: post_json(
        "/v2/models/tiny/infer", {"inputs": [GOOD_INPUT], "outputs": [{"name": n}]}
    ),
}

NAME_CASES = [
    pytest.param(build(name), id=f"{position}-{key}")
    for position, build in PATH_POSITIONS.items()
    for key, name in NAMES.items()
] + [
    pytest.param(build(name), id=f"{position}-{key}")
    for position, build in BODY_POSITIONS.items()
    for key, name in DECODED.items()
]


@pytest.mark.parametrize("raw", NAME_CASES)
def test_hostile_names_are_refused_400(
    raw: bytes, server: ServerProcess, client: httpx.Client, expected: list[float]
) -> None:
    assert exchange(server.http_port, raw) == [400]
    assert_live_and_correct(client, expected)


# -- framing: lying lengths, chunked floods, smuggling ----------------------------------------

BODY: Final = json.dumps({"inputs": GOOD_ROW}).encode()
PREDICT: Final = "POST /predict HTTP/1.1\r\nHost: inferd\r\nContent-Type: application/json\r\n"


def chunked(*chunks: bytes, end: bytes = b"0\r\n\r\n") -> bytes:
    out = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
    return (PREDICT + "Transfer-Encoding: chunked\r\n\r\n").encode() + out + end


def head(*fields: str, body: bytes = BODY) -> bytes:
    return (PREDICT + "".join(f + "\r\n" for f in fields) + "\r\n").encode() + body


FRAMING_CASES = [
    # (raw request, statuses of the answers read in order)
    pytest.param(head(f"Content-Length: {len(BODY) + 50}"), [408], id="cl-longer-than-body"),
    # The rest of the body is not taken for a second request: one 400, then the close.
    pytest.param(head("Content-Length: 5"), [400], id="cl-shorter-than-body"),
    pytest.param(head(f"Content-Length: {MAX_BYTES + 1}", body=b""), [413], id="cl-over-limit"),
    pytest.param(head("Content-Length: 99999999999999999999999", body=b""), [400], id="cl-huge"),
    pytest.param(head("Content-Length: -1", body=b""), [400], id="cl-negative"),
    pytest.param(head("Content-Length: +19"), [400], id="cl-plus-sign"),
    pytest.param(head("Content-Length: 0x13"), [400], id="cl-hex"),
    pytest.param(head("Content-Length: 1 9"), [400], id="cl-with-space"),
    pytest.param(
        head(f"Content-Length: {len(BODY)}", f"Content-Length: {len(BODY) + 1}"),
        [400],
        id="duplicate-cl-differing",
    ),
    pytest.param(
        head(f"Content-Length: {len(BODY)}, {len(BODY)}"), [400], id="cl-list-in-one-field"
    ),
    pytest.param(
        head("Content-Length: 4", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
        [400],
        id="smuggle-cl-te",
    ),
    pytest.param(
        head("Transfer-Encoding: chunked", "Content-Length: 4", body=b"0\r\n\r\n"),
        [400],
        id="smuggle-te-cl",
    ),
    pytest.param(
        head("Transfer-Encoding: chunked", "Transfer-Encoding: identity", body=b"0\r\n\r\n"),
        [400],
        id="duplicate-te",
    ),
    # RFC 9112 6.3: chunked not the final coding, the length is unknown: 400 and close.
    pytest.param(head("Transfer-Encoding: xchunked", body=b""), [400], id="te-unknown-coding"),
    pytest.param(
        head("Transfer-Encoding : chunked", body=b"0\r\n\r\n"), [400], id="te-space-colon"
    ),
    pytest.param(head("Transfer-Encoding:\tchunked\x0b", body=b""), [400], id="te-vertical-tab"),
    pytest.param(chunked(), [400], id="chunked-empty-body"),
    pytest.param(chunked(*[b"7" for _ in range(MAX_BYTES + 1)]), [413], id="chunked-flood-1-byte"),
    pytest.param(chunked(*[b"1" * 4096] * 80), [413], id="chunked-flood-over-limit"),
    pytest.param(
        (PREDICT + "Transfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n").encode(),
        [400],
        id="chunk-size-not-hex",
    ),
    pytest.param(
        (PREDICT + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nx\r\n").encode(),
        [400],
        id="chunk-size-overflow",
    ),
    pytest.param(
        (PREDICT + "Transfer-Encoding: chunked\r\n\r\n5;" + "e" * 70_000 + "\r\n").encode(),
        [408],  # extensions are skipped, not buffered; the body timer ends it
        id="chunk-extension-flood",
    ),
    pytest.param(chunked(BODY, end=b""), [408], id="chunked-no-last-chunk"),
    # A connection whose bytes do not parse is answered 400 and closed as a whole: what
    # was pipelined before the bad part is not served either (nothing after it can be).
    pytest.param(
        request("GET", "/healthz") + b"GARBAGE / HTTP/1.1\r\n\r\n",
        [400],
        id="pipelined-garbage-after-request",
    ),
    pytest.param(
        request("GET", "/healthz", b"", {"Content-Length": "0"})
        + request("GET", "/healthz")[:-2]
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        [400],
        id="pipelined-smuggle-te-after-cl",
    ),
    pytest.param(head("X-Bad: a\rb"), [400], id="bare-cr-in-header"),
    pytest.param(head("X-Bad: a\nb"), [400], id="bare-lf-in-header"),
    pytest.param(head("X-Bad: a", " folded"), [400], id="obs-fold"),
    pytest.param(head("X-Nul: a\x00b"), [400], id="nul-in-header"),
    pytest.param(head("Bad Name: x"), [400], id="space-in-header-name"),
    pytest.param(head("X-Big: " + "a" * 70_000), [431], id="header-too-large"),
    pytest.param(head(*[f"X-H{i}: v" for i in range(120)]), [431], id="too-many-headers"),
    # An HTTP/0.9-style request line is still held to the admin token.
    pytest.param(b"POST /v2/repository/models/tiny/unload\r\n\r\n", [401], id="http-0.9-admin"),
    pytest.param(b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", [400], id="http-version-9"),
    pytest.param(b"G\x00T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", [400], id="nul-in-method"),
    pytest.param(b"GET /heal thz HTTP/1.1\r\nHost: x\r\n\r\n", [400], id="space-in-target"),
    pytest.param(b"GET /healthz\x00 HTTP/1.1\r\nHost: x\r\n\r\n", [400], id="nul-in-target"),
]


@pytest.mark.parametrize(("raw", "statuses"), FRAMING_CASES)
def test_framing_attacks(
    raw: bytes,
    statuses: list[int],
    server: ServerProcess,
    client: httpx.Client,
    expected: list[float],
) -> None:
    assert exchange(server.http_port, raw, answers=len(statuses)) == statuses
    assert_live_and_correct(client, expected)


# -- bodies: deep JSON, shapes, datatypes, non-finite numbers, duplicates, binary lies ----------


def v2(**changes: Any) -> dict[str, Any]:
    return {"inputs": [{**GOOD_INPUT, **changes}]}


def binary(header: dict[str, Any], blob: bytes, header_length: str | None = None) -> bytes:
    raw = json.dumps(header).encode()
    length = str(len(raw)) if header_length is None else header_length
    headers = {
        "Inference-Header-Content-Length": length,
        "Content-Type": "application/octet-stream",
    }
    return request("POST", "/v2/models/tiny/infer", raw + blob, headers)


def bin_input(shape: list[int], size: int) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": shape,
                "datatype": "FP32",
                "parameters": {"binary_data_size": size},
            }
        ]
    }


FOUR: Final = np.ones((1, 4), dtype=np.float32).tobytes()
INFER: Final = "/v2/models/tiny/infer"

BODY_CASES = [
    pytest.param(
        post_json(INFER, b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"), id="deep-array"
    ),
    pytest.param(post_json(INFER, b'{"a":' * 5000 + b"1" + b"}" * 5000), id="deep-object"),
    pytest.param(
        post_json("/predict", b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}"), id="deep-predict"
    ),
    pytest.param(
        post_json(INFER, v2(data=[[[[[[[[1, 2, 3, 4]]]]]]]])), id="data-nested-past-shape"
    ),
    pytest.param(post_json(INFER, v2(shape=[1, 10**12])), id="huge-shape-tiny-data"),
    pytest.param(post_json(INFER, v2(shape=[10**9, 4])), id="huge-rows-tiny-data"),
    pytest.param(post_json(INFER, v2(shape=[2**62, 2**62])), id="shape-product-overflow"),
    pytest.param(post_json(INFER, v2(shape=[2**64, 4])), id="dim-past-int64"),
    pytest.param(post_json(INFER, v2(shape=[-1, 4])), id="negative-dim"),
    pytest.param(post_json(INFER, v2(shape=[1, -4])), id="negative-inner-dim"),
    pytest.param(post_json(INFER, v2(shape=[1, 4.5])), id="fractional-dim"),
    pytest.param(post_json(INFER, v2(shape=["1", "4"])), id="string-dims"),
    pytest.param(post_json(INFER, v2(shape=None)), id="shape-null"),
    pytest.param(post_json(INFER, v2(shape=[1, 2, 2])), id="shape-wrong-rank"),
    pytest.param(post_json(INFER, v2(datatype="FP128")), id="dtype-unknown"),
    pytest.param(post_json(INFER, v2(datatype="fp32")), id="dtype-lower-case"),
    pytest.param(
        post_json(INFER, v2(datatype="BYTES", data=["a", "b", "c", "d"])), id="dtype-bytes-for-fp32"
    ),
    pytest.param(
        post_json(INFER, v2(datatype="INT64", data=[1, 2, 3, 4])), id="dtype-int64-for-fp32"
    ),
    pytest.param(post_json(INFER, v2(datatype=32)), id="dtype-number"),
    pytest.param(post_json(INFER, v2(data=["1", "2", "3", "4"])), id="strings-as-fp32"),
    pytest.param(post_json(INFER, v2(data=[True, False, True, False])), id="bools-as-fp32"),
    pytest.param(post_json(INFER, v2(data=[None, 1, 2, 3])), id="null-in-data"),
    pytest.param(post_json(INFER, v2(data=[{"a": 1}, 2, 3, 4])), id="object-in-data"),
    pytest.param(
        post_json(
            "/v2/models/ints/infer",
            {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1.5, 2]}]},
        ),
        id="float-as-int64",
    ),
    pytest.param(
        post_json(
            "/v2/models/ints/infer",
            {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [2**64, 1]}]},
        ),
        id="int-past-int64",
    ),
    pytest.param(
        post_json(
            INFER,
            b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [NaN, 1, 2, 3]}]}',
        ),
        id="nan-literal",
    ),
    pytest.param(
        post_json(
            INFER,
            b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [Infinity, 1, 2, 3]}]}',
        ),
        id="infinity-literal",
    ),
    pytest.param(post_json("/predict", b'{"inputs": [NaN, 1, 2, 3]}'), id="nan-literal-predict"),
    pytest.param(
        post_json("/predict", b'{"inputs": [-Infinity, 1, 2, 3]}'), id="minus-infinity-predict"
    ),
    pytest.param(
        post_json(INFER, {"inputs": [GOOD_INPUT, GOOD_INPUT]}), id="duplicate-input-names"
    ),
    pytest.param(
        post_json(
            INFER, {"inputs": [GOOD_INPUT], "outputs": [{"name": "output"}, {"name": "output"}]}
        ),
        id="duplicate-output-names",
    ),
    pytest.param(post_json(INFER, b'{"inputs": [], "inputs": []}'), id="duplicate-json-keys"),
    pytest.param(post_json(INFER, {"inputs": []}), id="no-inputs"),
    pytest.param(post_json(INFER, {"inputs": "x"}), id="inputs-not-a-list"),
    pytest.param(post_json(INFER, b"\xff\xfe{}"), id="not-utf8"),
    pytest.param(post_json(INFER, b'{"inputs": [1e999]}'), id="number-overflow"),
    pytest.param(binary(bin_input([1, 4], 32), FOUR), id="binary-size-larger-than-blob"),
    pytest.param(binary(bin_input([1, 4], 8), FOUR), id="binary-size-smaller-than-blob"),
    pytest.param(binary(bin_input([1, 4], -16), FOUR), id="binary-size-negative"),
    pytest.param(binary(bin_input([1, 8], 16), FOUR[:16]), id="binary-size-not-the-shape"),
    pytest.param(
        binary(bin_input([1, 4], 16), FOUR, header_length="99999"), id="header-length-past-body"
    ),
    pytest.param(
        binary(bin_input([1, 4], 16), FOUR, header_length="-5"), id="header-length-negative"
    ),
    pytest.param(
        binary(bin_input([1, 4], 16), FOUR, header_length="ten"), id="header-length-not-a-number"
    ),
    pytest.param(binary(bin_input([1, 10**12], 16), FOUR), id="binary-huge-shape-tiny-data"),
]


@pytest.mark.parametrize("raw", BODY_CASES)
def test_hostile_bodies_are_refused_400(
    raw: bytes, server: ServerProcess, client: httpx.Client, expected: list[float]
) -> None:
    assert exchange(server.http_port, raw) == [400]
    assert_live_and_correct(client, expected)


# -- auth bypass on the control endpoints --------------------------------------------------------

LOAD: Final = "/v2/repository/models/tiny/load"
UNLOAD: Final = "/v2/repository/models/tiny/unload"
BASIC: Final = "Basic " + base64.b64encode(f"admin:{TOKEN}".encode()).decode()

AUTH_CASES = [
    pytest.param(request("POST", LOAD), 401, id="load-no-key"),
    pytest.param(request("POST", UNLOAD), 401, id="unload-no-key"),
    pytest.param(
        request("POST", LOAD, b"", {"Authorization": "Bearer wrong"}), 401, id="load-wrong-key"
    ),
    pytest.param(
        request("POST", UNLOAD, b"", {"Authorization": "Bearer wrong"}), 401, id="unload-wrong-key"
    ),
    pytest.param(
        request("POST", LOAD, b"", {"Authorization": "Bearer " + TOKEN[:-1]}), 401, id="key-prefix"
    ),
    pytest.param(
        request("POST", LOAD, b"", {"Authorization": "Bearer " + TOKEN + "x"}),
        401,
        id="key-extended",
    ),
    pytest.param(
        request("POST", LOAD, b"", {"Authorization": f"Bearer {INFER_KEY}"}),
        403,
        id="infer-scope-key",
    ),
    pytest.param(request("POST", LOAD, b"", {"Authorization": BASIC}), 401, id="basic-auth"),
    pytest.param(
        request("POST", LOAD, b"", {"Authorization": TOKEN}), 401, id="key-without-scheme"
    ),
    pytest.param(request("POST", LOAD, b"", {"X-API-Key": "wrong"}), 401, id="wrong-x-api-key"),
    pytest.param(request("POST", f"{LOAD}?token={TOKEN}"), 401, id="key-in-query-token"),
    pytest.param(request("POST", f"{LOAD}?api_key={TOKEN}"), 401, id="key-in-query-api-key"),
    pytest.param(
        request("POST", f"{LOAD}?access_token={TOKEN}"), 401, id="key-in-query-access-token"
    ),
    pytest.param(
        request("POST", f"{UNLOAD}?authorization=Bearer%20{TOKEN}"),
        401,
        id="key-in-query-authorization",
    ),
    pytest.param(
        request("POST", LOAD, b"", {"Authorization": f"Bearer wrong\rX-Admin: {TOKEN}"}),
        400,
        id="crlf-cr-in-auth",
    ),
    pytest.param(
        request("POST", LOAD, b"", {"Authorization": f"Bearer x\nAuthorization: Bearer {TOKEN}"}),
        400,
        id="crlf-lf-in-auth",
    ),
    pytest.param(
        request("POST", LOAD, b"", {"Authorization": "Bearer " + TOKEN[:4] + "\x00" + TOKEN[4:]}),
        400,
        id="nul-in-key",
    ),
    pytest.param(
        request("POST", LOAD, b"", {"Authorization": "Bearer " + "k" * 4096}), 401, id="key-4k"
    ),
    pytest.param(
        request("POST", "/v2/repository/models/../load", b"", ADMIN), 400, id="traversal-with-key"
    ),
    pytest.param(
        request("POST", "/v2/repository/models/nope/unload", b"", ADMIN),
        404,
        id="unknown-model-with-key",
    ),
]


@pytest.mark.parametrize(("raw", "status"), AUTH_CASES)
def test_auth_bypass_is_refused(
    raw: bytes, status: int, server: ServerProcess, client: httpx.Client, expected: list[float]
) -> None:
    assert exchange(server.http_port, raw) == [status]
    assert_live_and_correct(client, expected)


# -- gRPC ----------------------------------------------------------------------------------------


def tensor_request(model: str = "tiny", version: str = "", **changes: Any) -> Any:
    fields: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": [1, 4], **changes}
    raw = fields.pop("raw", FOUR)
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(**fields)
    request.raw_input_contents.append(raw)
    return request


INVALID = grpc.StatusCode.INVALID_ARGUMENT
GRPC_NAME_CASES = [
    pytest.param(method, build(name), INVALID, id=f"{position}-{key}")
    for key, name in DECODED.items()
    for position, (method, build) in {
        "infer-model": ("ModelInfer", lambda n: tensor_request(model=n)),
        "infer-version": ("ModelInfer", lambda n: tensor_request(version=n)),
        "metadata-model": ("ModelMetadata", lambda n: pb.ModelMetadataRequest(name=n)),
        "config-model": ("ModelConfig", lambda n: pb.ModelConfigRequest(name=n)),
    }.items()
]
GRPC_TENSOR_CASES = [
    pytest.param("ModelInfer", tensor_request(shape=[-1, 4]), INVALID, id="negative-dim"),
    pytest.param("ModelInfer", tensor_request(shape=[2**62, 2**62]), INVALID, id="shape-overflow"),
    pytest.param(
        "ModelInfer", tensor_request(shape=[1, 10**12]), INVALID, id="huge-shape-tiny-data"
    ),
    pytest.param(
        "ModelInfer", tensor_request(datatype="INT64"), INVALID, id="dtype-int64-for-fp32"
    ),
    pytest.param("ModelInfer", tensor_request(datatype="FP128"), INVALID, id="dtype-unknown"),
    pytest.param(
        "ModelInfer", tensor_request(raw=FOUR + FOUR), INVALID, id="raw-larger-than-shape"
    ),
    pytest.param("ModelInfer", tensor_request(raw=FOUR[:8]), INVALID, id="raw-smaller-than-shape"),
    pytest.param("ModelInfer", tensor_request(raw=b""), INVALID, id="raw-empty"),
    pytest.param("ModelInfer", tensor_request(name="nope"), INVALID, id="unknown-input-name"),
    pytest.param(
        "ModelInfer",
        tensor_request(raw=b"\x00" * (MAX_BYTES + 16)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        id="message-over-limit",
    ),
]


def duplicated() -> Any:
    request = tensor_request()
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(FOUR)
    return request


def nan_contents() -> Any:
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend(
        [1.0, float("nan"), 3.0, 4.0]
    )
    request.raw_input_contents.append(FOUR)  # and raw contents too: one or the other
    return request


GRPC_TENSOR_CASES += [
    pytest.param("ModelInfer", duplicated(), INVALID, id="duplicate-input-names"),
    pytest.param("ModelInfer", nan_contents(), INVALID, id="contents-and-raw-both"),
]

GRPC_AUTH_CASES = [
    pytest.param(method, metadata, code, id=f"{method}-{label}")
    for method in ("RepositoryModelLoad", "RepositoryModelUnload")
    for label, metadata, code in (
        ("no-key", (), grpc.StatusCode.UNAUTHENTICATED),
        ("wrong-key", (("authorization", "Bearer wrong"),), grpc.StatusCode.UNAUTHENTICATED),
        (
            "infer-scope-key",
            (("authorization", f"Bearer {INFER_KEY}"),),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        ("wrong-x-api-key", (("x-api-key", "wrong"),), grpc.StatusCode.UNAUTHENTICATED),
    )
]


async def grpc_call(
    server: ServerProcess, method: str, message: Any, metadata: Any = ()
) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            await getattr(stub, method)(message, metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize(("method", "message", "code"), GRPC_NAME_CASES + GRPC_TENSOR_CASES)
async def test_grpc_hostile_messages(
    method: str,
    message: Any,
    code: grpc.StatusCode,
    server: ServerProcess,
    client: httpx.Client,
    expected: list[float],
) -> None:
    assert await grpc_call(server, method, message) == code
    assert await grpc_call(server, "ModelInfer", tensor_request()) == grpc.StatusCode.OK
    assert_live_and_correct(client, expected)


@pytest.mark.parametrize(("method", "metadata", "code"), GRPC_AUTH_CASES)
async def test_grpc_auth_bypass_is_refused(
    method: str,
    metadata: Any,
    code: grpc.StatusCode,
    server: ServerProcess,
    client: httpx.Client,
    expected: list[float],
) -> None:
    kind = (
        pb.RepositoryModelLoadRequest
        if method.endswith("Load")
        else pb.RepositoryModelUnloadRequest
    )
    assert await grpc_call(server, method, kind(model_name="tiny"), metadata) == code
    assert_live_and_correct(client, expected)


# -- WebSocket -----------------------------------------------------------------------------------

WS_CASES = [
    pytest.param(b"{not json", 400, id="not-json"),
    pytest.param(b"[" * 5000 + b"]" * 5000, 400, id="deep-json"),
    pytest.param(b'"a string"', 400, id="not-an-object"),
    pytest.param(b'{"inputs": [NaN, 1, 2, 3]}', 400, id="nan-literal"),
    pytest.param(json.dumps({"inputs": GOOD_ROW, "model": ".."}).encode(), 400, id="model-dotdot"),
    pytest.param(
        json.dumps({"inputs": GOOD_ROW, "model": "m" * 200}).encode(), 400, id="model-too-long"
    ),
    pytest.param(
        json.dumps({"inputs": GOOD_ROW, "model_version": "../1"}).encode(),
        400,
        id="version-traversal",
    ),
    pytest.param(
        json.dumps({**v2(shape=[-1, 4]), "model_name": "tiny"}).encode(), 400, id="v2-negative-dim"
    ),
    pytest.param(
        json.dumps({**v2(shape=[2**62, 2**62]), "model_name": "tiny"}).encode(),
        400,
        id="v2-overflow",
    ),
    pytest.param(
        json.dumps({**v2(datatype="BYTES"), "model_name": "tiny"}).encode(), 400, id="v2-dtype"
    ),
    pytest.param(
        json.dumps({"inputs": [GOOD_INPUT, GOOD_INPUT], "model_name": "tiny"}).encode(),
        400,
        id="v2-duplicates",
    ),
    pytest.param(
        json.dumps({**v2(), "model_name": "..%2f"}).encode(), 400, id="v2-model-traversal"
    ),
    pytest.param(
        json.dumps({"inputs": GOOD_ROW, "model": "nope"}).encode(), 404, id="unknown-model"
    ),
]


@pytest.mark.parametrize(("frame", "code"), WS_CASES)
async def test_websocket_hostile_messages(
    frame: bytes, code: int, server: ServerProcess, client: httpx.Client, expected: list[float]
) -> None:
    url = server.url.replace("http://", "ws://") + "/predict/stream"
    async with connect(url) as ws:
        await ws.send(frame.decode())
        reply = json.loads(await ws.recv())
        assert (reply["code"], reply["seq"]) == (code, 1)
        await ws.send(json.dumps({"inputs": GOOD_ROW}))  # the stream goes on
        assert json.loads(await ws.recv())["predictions"] == expected
    assert_live_and_correct(client, expected)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        # Not routes: refused with 404 before admission, as any path not in the table.
        pytest.param("/v2/models/..%2f..%2fetc/stream", 404, id="encoded-slash-in-model"),
        pytest.param("/predict/stream/..", 404, id="path-past-the-route"),
    ],
)
async def test_websocket_hostile_paths(
    path: str, status: int, server: ServerProcess, client: httpx.Client, expected: list[float]
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(server.url.replace("http://", "ws://") + path):
            pass
    assert refused.value.response.status_code == status
    assert_live_and_correct(client, expected)


def test_the_corpus_has_at_least_150_cases() -> None:
    cases = (
        NAME_CASES
        + FRAMING_CASES
        + BODY_CASES
        + AUTH_CASES
        + GRPC_NAME_CASES
        + GRPC_TENSOR_CASES
        + GRPC_AUTH_CASES
        + WS_CASES
    )
    assert len(cases) >= 150

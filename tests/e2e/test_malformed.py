"""Bad input over real sockets: every request gets the intended 4xx, never a 500, and the
server stays live and keeps answering good requests."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.conftest import ServerProcess

INFER = "/v2/models/tiny/infer"
GOOD_INPUT = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}


def v2(**changes: object) -> bytes:
    item = {**GOOD_INPUT, **changes}
    return json.dumps({"inputs": [{k: v for k, v in item.items() if v is not None}]}).encode()


def doc(**fields: object) -> bytes:
    return json.dumps({"inputs": [GOOD_INPUT], **fields}).encode()


def binary(
    header: dict[str, object], blob: bytes, header_length: int | None = None
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(header).encode()
    length = len(raw) if header_length is None else header_length
    return raw + blob, {"Inference-Header-Content-Length": str(length)}


def bin_input(shape: list[int], size: int, **extra: object) -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": shape,
                "datatype": "FP32",
                "parameters": {"binary_data_size": size},
                **extra,
            }
        ]
    }


FOUR = np.ones((1, 4), dtype=np.float32).tobytes()
NAN = np.array([[1, np.nan, 3, 4]], dtype=np.float32).tobytes()
INF = np.array([[1, np.inf, 3, 4]], dtype=np.float32).tobytes()


def deep(depth: int) -> bytes:
    return b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"


def deep_data(depth: int) -> bytes:
    data = 1.0
    for _ in range(depth):
        data = [data]  # type: ignore[assignment]
    return json.dumps(
        {"inputs": [{"name": "input", "shape": [1] * depth, "datatype": "FP32", "data": data}]}
    ).encode()


# (id, method, path, body, headers, status, fragment of the error message)
CASES: list[tuple[str, str, str, bytes, dict[str, str], int, str]] = [
    ("truncated-json", "POST", INFER, b'{"inputs": [', {}, 400, "malformed JSON"),
    ("empty-body", "POST", INFER, b"", {}, 400, "malformed JSON"),
    ("not-utf8", "POST", INFER, b'{"inputs": "\xff\xfe"}', {}, 400, "malformed JSON"),
    ("nan-literal", "POST", INFER, b'{"inputs": [NaN]}', {}, 400, "malformed JSON"),
    ("deep-nesting", "POST", INFER, deep(100_000), {}, 400, "malformed JSON"),
    ("top-level-array", "POST", INFER, b"[]", {}, 400, "JSON object"),
    ("no-inputs", "POST", INFER, b"{}", {}, 400, "'inputs' must be a non-empty list"),
    ("empty-inputs", "POST", INFER, b'{"inputs": []}', {}, 400, "non-empty list"),
    ("inputs-not-list", "POST", INFER, b'{"inputs": 3}', {}, 400, "non-empty list"),
    (
        "input-not-object",
        "POST",
        INFER,
        b'{"inputs": [3]}',
        {},
        400,
        "inputs[0] must be a JSON object",
    ),
    ("input-no-name", "POST", INFER, v2(name=None), {}, 400, "non-empty string 'name'"),
    ("input-name-number", "POST", INFER, v2(name=7), {}, 400, "non-empty string 'name'"),
    ("unknown-datatype", "POST", INFER, v2(datatype="FP8"), {}, 400, "unknown datatype 'FP8'"),
    (
        "no-datatype",
        "POST",
        INFER,
        v2(datatype=None),
        {},
        400,
        "input 'input': datatype is required; one of BOOL, UINT8",
    ),
    (
        "wrong-datatype",
        "POST",
        INFER,
        v2(datatype="INT32"),
        {},
        400,
        "expected datatype FP32, got INT32",
    ),
    ("shape-not-list", "POST", INFER, v2(shape="1,4"), {}, 400, "shape must be a list"),
    ("shape-negative", "POST", INFER, v2(shape=[-1, 4]), {}, 400, "non-negative integers"),
    ("shape-float", "POST", INFER, v2(shape=[1.0, 4]), {}, 400, "non-negative integers"),
    ("shape-bool", "POST", INFER, v2(shape=[True, 4]), {}, 400, "non-negative integers"),
    ("wrong-rank", "POST", INFER, v2(shape=[4]), {}, 400, "expected shape [-1, 4], got [4]"),
    (
        "wrong-dim",
        "POST",
        INFER,
        v2(shape=[1, 5], data=[1, 2, 3, 4, 5]),
        {},
        400,
        "expected shape [-1, 4], got [1, 5]",
    ),
    (
        "count-mismatch",
        "POST",
        INFER,
        v2(data=[1, 2, 3]),
        {},
        400,
        "needs 4 elements, 'data' has 3",
    ),
    ("data-strings", "POST", INFER, v2(data=["a", "b", "c", "d"]), {}, 400, "must be numbers"),
    (
        "data-ragged",
        "POST",
        INFER,
        v2(shape=[2, 4], data=[[1, 2, 3, 4], [3]]),
        {},
        400,
        "'data' is not a regular array: its rows differ at depth 1",
    ),
    ("data-not-list", "POST", INFER, v2(data=5), {}, 400, "'data' must be a list"),
    ("data-null-item", "POST", INFER, v2(data=[1, None, 3, 4]), {}, 400, "must be numbers"),
    (
        "huge-declared-shape",
        "POST",
        INFER,
        v2(shape=[10**12, 4]),
        {},
        400,
        "needs 4000000000000 elements",
    ),
    ("too-many-dims", "POST", INFER, deep_data(40), {}, 400, "at most 32"),
    (
        "batch-too-large",
        "POST",
        INFER,
        v2(shape=[33, 4], data=[0.0] * 132),
        {},
        400,
        "outside 1..32",
    ),
    ("batch-zero", "POST", INFER, v2(shape=[0, 4], data=[]), {}, 400, "outside 1..32"),
    ("unknown-input", "POST", INFER, v2(name="image"), {}, 400, "unknown input 'image'"),
    (
        "duplicate-input",
        "POST",
        INFER,
        json.dumps({"inputs": [GOOD_INPUT, GOOD_INPUT]}).encode(),
        {},
        400,
        "more than once",
    ),
    ("unknown-top-field", "POST", INFER, doc(inptus=[]), {}, 400, "unknown field(s) ['inptus']"),
    ("unknown-input-field", "POST", INFER, v2(dtype="FP32"), {}, 400, "unknown field(s) ['dtype']"),
    ("id-not-string", "POST", INFER, doc(id=5), {}, 400, "'id' must be a string"),
    (
        "parameters-not-object",
        "POST",
        INFER,
        doc(parameters=[1]),
        {},
        400,
        "'parameters' must be a JSON object",
    ),
    (
        "parameter-nested",
        "POST",
        INFER,
        doc(parameters={"a": {"b": 1}}),
        {},
        400,
        "must be a bool, number or string",
    ),
    (
        "timeout-not-int",
        "POST",
        INFER,
        doc(parameters={"timeout": "soon"}),
        {},
        400,
        "parameter 'timeout'",
    ),
    (
        "outputs-not-list",
        "POST",
        INFER,
        doc(outputs={"name": "output"}),
        {},
        400,
        "'outputs' must be a list",
    ),
    (
        "unknown-output",
        "POST",
        INFER,
        doc(outputs=[{"name": "logits"}]),
        {},
        400,
        "unknown output 'logits'",
    ),
    (
        "duplicate-output",
        "POST",
        INFER,
        doc(outputs=[{"name": "output"}] * 2),
        {},
        400,
        "requested more than once",
    ),
    ("no-data", "POST", INFER, v2(data=None), {}, 400, "no 'data' and no binary_data_size"),
    (
        "bin-header-nan",
        "POST",
        INFER,
        *binary(bin_input([1, 4], 16), FOUR, header_length=0),
        400,
        "outside the body",
    ),
    (
        "bin-header-not-number",
        "POST",
        INFER,
        FOUR,
        {"Inference-Header-Content-Length": "abc"},
        400,
        "is not a number",
    ),
    (
        "bin-header-past-body",
        "POST",
        INFER,
        *binary(bin_input([1, 4], 16), FOUR, header_length=10_000),
        400,
        "outside the body",
    ),
    ("bin-size-past-data", "POST", INFER, *binary(bin_input([1, 4], 32), FOUR), 400, "runs past"),
    (
        "bin-leftover",
        "POST",
        INFER,
        *binary(bin_input([1, 4], 16), FOUR + b"xx"),
        400,
        "add up to 16",
    ),
    (
        "bin-wrong-size",
        "POST",
        INFER,
        *binary(bin_input([1, 4], 15), FOUR[:15]),
        400,
        "needs 16 bytes, got 15",
    ),
    (
        "bin-huge-shape",
        "POST",
        INFER,
        *binary(bin_input([10**12, 4], 16), FOUR),
        400,
        "needs 16000000000000 bytes",
    ),
    (
        "bin-and-data",
        "POST",
        INFER,
        *binary(bin_input([1, 4], 16, data=[1, 2, 3, 4]), FOUR),
        400,
        "not both",
    ),
    (
        "bin-size-negative",
        "POST",
        INFER,
        *binary(bin_input([1, 4], -16), FOUR),
        400,
        "non-negative integer",
    ),
    ("bin-nan", "POST", INFER, *binary(bin_input([1, 4], 16), NAN), 400, "NaN or Inf"),
    ("bin-inf", "POST", INFER, *binary(bin_input([1, 4], 16), INF), 400, "NaN or Inf"),
    ("unknown-model", "POST", "/v2/models/nope/infer", doc(), {}, 404, "model 'nope' is not known"),
    (
        "unknown-version",
        "POST",
        "/v2/models/tiny/versions/7/infer",
        doc(),
        {},
        404,
        "no version '7'",
    ),
    ("unsafe-model-name", "POST", "/v2/models/a..b/infer", doc(), {}, 400, "not allowed"),
    ("unknown-model-metadata", "GET", "/v2/models/nope", b"", {}, 404, "not known"),
    ("unknown-path", "GET", "/v3/anything", b"", {}, 404, "Not Found"),
    ("wrong-method", "GET", INFER, b"", {}, 405, "Method Not Allowed"),
    ("predict-not-json", "POST", "/predict", b"inputs=1,2,3,4", {}, 400, "malformed JSON"),
    ("predict-string", "POST", "/predict", b'"1,2,3,4"', {}, 400, "JSON object"),
    (
        "predict-wrong-length",
        "POST",
        "/predict",
        b'{"inputs": [1, 2]}',
        {},
        400,
        "'inputs' must be one row of shape [4] (input 'input' of model 'tiny' is [-1, 4]); "
        "got shape [2]",
    ),
    (
        "predict-bool",
        "POST",
        "/predict",
        b'{"inputs": [true, false, true, 1]}',
        {},
        400,
        "FP32 data must be numbers",
    ),
    (
        "predict-nested-object",
        "POST",
        "/predict",
        b'{"inputs": [{"a": 1}, 2, 3, 4]}',
        {},
        400,
        "FP32 data must be numbers",
    ),
    # No admin key configured: the control API is off, whatever the body.
    ("index-off", "POST", "/v2/repository/index", b'{"ready": "yes"}', {}, 403, "keys new"),
]


@pytest.fixture(scope="module")
def client(live_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        yield http


def test_there_are_at_least_forty_cases() -> None:
    assert len([c for c in CASES if c[5] >= 400]) >= 40


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "fragment"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_bad_request(
    client: httpx.Client,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    fragment: str,
) -> None:
    response = client.request(method, path, content=body or None, headers=headers)
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"].startswith("application/json")
        assert fragment in response.json()["error"]
    assert client.get("/healthz").status_code == 200


def test_declared_oversized_body_is_refused_before_reading(client: httpx.Client) -> None:
    body = b" " * (16 * 1024 * 1024 + 1)
    response = client.post(INFER, content=body)
    assert response.status_code == 413
    assert "exceeds" in response.json()["error"]


def test_chunked_oversized_body_is_counted_as_it_streams(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b" " * (1024 * 1024)

    response = client.post(INFER, content=chunks())
    assert response.status_code == 413


def test_still_serving_after_the_table(client: httpx.Client) -> None:
    response = client.post("/predict", json={"inputs": [1, 2, 3, 4]})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 2

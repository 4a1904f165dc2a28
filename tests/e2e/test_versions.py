"""Versions and traffic on a real server: the traffic admin API, sticky routing keys over
REST and gRPC (header, metadata, the caller's key name), the version in every answer."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton

from inferd.gateway.keys import Scope, new_key
from inferd.grpc.protos import simple_pb2, simple_pb2_grpc
from tests.conftest import ServerProcess
from tests.core.store.test_repository import make_model

ADMIN_KEY, ADMIN = new_key("ops", Scope.ADMIN)
INFER_KEY, INFER = new_key("app", Scope.INFER)
AS_ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
AS_APP = {"Authorization": f"Bearer {INFER_KEY}"}
KEYS = [f"user-{i}" for i in range(40)]
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 1]}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("versions")
    folder = make_model(
        root, "m", ["1", "2"], "version_policy: {all: true}\ntraffic: {1: 50, 2: 50}\n"
    )
    for version in ("1", "2"):
        (folder / version / "model.py").write_text(
            "class Model:\n    def predict(self, inputs):\n"
            f"        return {{'x': inputs['x'] * {version}}}\n"
        )
    server = ServerProcess(
        root, env={"INFERENCE_SERVER__API_KEYS": f"{ADMIN.line()},{INFER.line()}"}
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def half_and_half(server: ServerProcess) -> str:
    answer = httpx.put(
        f"{server.url}/v2/models/m/traffic", json={"traffic": {"1": 50, "2": 50}}, headers=AS_ADMIN
    )
    assert answer.status_code == 200, answer.text
    return server.url


@pytest.mark.parametrize(("headers", "status"), [({}, 401), (AS_APP, 403), (AS_ADMIN, 200)])
def test_traffic_needs_the_admin_scope(
    half_and_half: str, headers: dict[str, str], status: int
) -> None:
    read = httpx.get(f"{half_and_half}/v2/models/m/traffic", headers=headers)
    assert read.status_code == status, read.text
    put = httpx.put(
        f"{half_and_half}/v2/models/m/traffic",
        json={"traffic": {"1": 80, "2": 20}},
        headers=headers,
    )
    assert put.status_code == status, put.text
    if status == 200:
        assert read.json() == {"model": "m", "traffic": {"1": 50, "2": 50}, "versions": ["1", "2"]}
        assert put.json()["traffic"] == {"1": 80, "2": 20}


def test_put_traffic_sets_and_clears(half_and_half: str) -> None:
    url = f"{half_and_half}/v2/models/m/traffic"
    answer = httpx.put(url, json={"traffic": {"1": 100, "2": 0}}, headers=AS_ADMIN)
    assert answer.json()["traffic"] == {"1": 100, "2": 0}
    for key in KEYS[:10]:
        infer = httpx.post(
            f"{half_and_half}/v2/models/m/infer",
            json=BODY,
            headers={**AS_APP, "X-Routing-Key": key},
        )
        assert infer.json()["model_version"] == "1"
    cleared = httpx.put(url, json={"traffic": None}, headers=AS_ADMIN)
    assert cleared.json() == {"model": "m", "traffic": None, "versions": ["1", "2"]}
    infer = httpx.post(f"{half_and_half}/v2/models/m/infer", json=BODY, headers=AS_APP)
    assert infer.headers["x-model-version"] == "2"  # the latest


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("m", {"traffic": {"1": 60, "2": 60}}, 400, "must sum to 100, got 120"),
        ("m", {"traffic": {"1": 50, "3": 50}}, 400, "version '3' is not served"),
        ("m", {"traffic": {"1": "100"}}, 400, "must be an integer >= 0"),
        ("m", {"weights": {"1": 100}}, 400, "the traffic request is"),
        ("m", ["1"], 400, "the traffic request is"),
        ("nope", {"traffic": {"1": 100}}, 404, "model 'nope' is not known"),
    ],
)
def test_a_bad_traffic_request_is_refused(
    half_and_half: str, path: str, body: object, status: int, message: str
) -> None:
    answer = httpx.put(f"{half_and_half}/v2/models/{path}/traffic", json=body, headers=AS_ADMIN)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    read = httpx.get(f"{half_and_half}/v2/models/m/traffic", headers=AS_ADMIN)
    assert read.json()["traffic"] == {"1": 50, "2": 50}


def test_malformed_json_is_a_400(half_and_half: str) -> None:
    answer = httpx.put(f"{half_and_half}/v2/models/m/traffic", content=b"{", headers=AS_ADMIN)
    assert answer.status_code == 400


def test_the_routing_key_header_sticks_over_rest(half_and_half: str) -> None:
    seen: dict[str, str] = {}
    for key in KEYS:
        headers = {**AS_APP, "X-Routing-Key": key}
        v2 = httpx.post(f"{half_and_half}/v2/models/m/infer", json=BODY, headers=headers)
        simple = httpx.post(
            f"{half_and_half}/models/m/predict", json={"inputs": [1, 1]}, headers=headers
        )
        version = v2.json()["model_version"]
        assert v2.headers["x-model-version"] == version
        assert v2.json()["outputs"][0]["data"] == [float(version)] * 2
        assert simple.json()["model_version"] == version
        assert simple.headers["x-model-version"] == version
        seen[key] = version
    assert set(seen.values()) == {"1", "2"}
    for key, version in seen.items():
        again = httpx.post(
            f"{half_and_half}/v2/models/m/infer",
            json=BODY,
            headers={**AS_APP, "X-Routing-Key": key},
        )
        assert again.headers["x-model-version"] == version


def test_the_key_name_is_the_routing_key_without_a_header(half_and_half: str) -> None:
    versions = {
        httpx.post(f"{half_and_half}/v2/models/m/infer", json=BODY, headers=AS_APP).headers[
            "x-model-version"
        ]
        for _ in range(20)
    }
    assert len(versions) == 1


def test_a_routing_key_too_long_is_a_400(half_and_half: str) -> None:
    answer = httpx.post(
        f"{half_and_half}/v2/models/m/infer",
        json=BODY,
        headers={**AS_APP, "X-Routing-Key": "k" * 257},
    )
    assert answer.status_code == 400
    assert "at most 256" in answer.json()["error"]


def test_grpc_routing_key_metadata_sticks(half_and_half: str, server: ServerProcess) -> None:
    rest = {
        key: httpx.post(
            f"{half_and_half}/v2/models/m/infer",
            json=BODY,
            headers={**AS_APP, "X-Routing-Key": key},
        ).headers["x-model-version"]
        for key in KEYS
    }
    with triton.InferenceServerClient(server.grpc_target) as client:
        tensor = triton.InferInput("x", [1, 2], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 2), dtype=np.float32))
        for key, version in rest.items():
            headers = {"authorization": f"Bearer {INFER_KEY}", "x-routing-key": key}
            for _ in range(2):
                result = client.infer("m", [tensor], headers=headers)
                assert result.get_response().model_version == version
                assert result.as_numpy("x").tolist() == [[float(version)] * 2]
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = simple_pb2_grpc.InferenceServiceStub(channel)
        for key, version in rest.items():
            metadata = (("authorization", f"Bearer {INFER_KEY}"), ("x-routing-key", key))
            answer = stub.Predict(
                simple_pb2.PredictRequest(inputs=[1, 1], model_name="m"), metadata=metadata
            )
            assert answer.model_version == version
            assert list(answer.predictions) == [float(version)] * 2


def test_metrics_carry_the_version_that_answered(half_and_half: str) -> None:
    for key in KEYS:
        httpx.post(
            f"{half_and_half}/v2/models/m/infer",
            json=BODY,
            headers={**AS_APP, "X-Routing-Key": key},
        )
    text = httpx.get(f"{half_and_half}/metrics").text
    # Labels in name order, as the multiprocess exporter writes them.
    for version in ("1", "2"):
        series = f'model="m",protocol="rest",status="ok",version="{version}"}}'
        assert f"inferd_requests_total{{{series}" in text

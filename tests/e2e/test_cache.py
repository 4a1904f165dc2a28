"""The prediction cache as clients see it: X-Cache on REST, trailing metadata on gRPC."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import orjson
import pytest

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess
from tests.core.test_cache import counting_repo


@pytest.fixture(scope="module")
def cached_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = counting_repo(tmp_path_factory.mktemp("cached"), {"enabled": True})
    server = ServerProcess(root)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def v2_body(x: float) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [x, x]}]}


def test_rest_v2_says_miss_then_hit(cached_server: ServerProcess) -> None:
    url = f"{cached_server.url}/v2/models/m/infer"
    first = httpx.post(url, json=v2_body(10.0))
    second = httpx.post(url, json=v2_body(10.0))
    assert (first.status_code, first.headers["x-cache"]) == (200, "miss")
    assert (second.status_code, second.headers["x-cache"]) == (200, "hit")
    assert second.json()["outputs"] == first.json()["outputs"]


def test_simple_predict_says_miss_then_hit(cached_server: ServerProcess) -> None:
    url = f"{cached_server.url}/models/m/predict"
    first = httpx.post(url, json={"inputs": [20.0, 20.0]})
    second = httpx.post(url, json={"inputs": [20.0, 20.0]})
    assert [first.headers["x-cache"], second.headers["x-cache"]] == ["miss", "hit"]
    assert second.json()["predictions"] == first.json()["predictions"]


def test_grpc_trailing_metadata_says_miss_then_hit(cached_server: ServerProcess) -> None:
    x = np.asarray([[30.0, 30.0]], dtype=np.float32)
    request = pb.ModelInferRequest(
        model_name="m",
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
        raw_input_contents=[x.tobytes()],
    )
    with grpc.insecure_channel(cached_server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        seen = []
        for _ in range(2):
            _, call = stub.ModelInfer.with_call(request, timeout=10)
            seen.append(dict(call.trailing_metadata())["x-cache"])
    assert seen == ["miss", "hit"]


def test_triton_statistics_count_hits_and_misses(cached_server: ServerProcess) -> None:
    url = f"{cached_server.url}/v2/models/m/infer"
    before = httpx.get(f"{cached_server.url}/v2/models/m/stats").json()
    httpx.post(url, json=v2_body(40.0))
    httpx.post(url, json=v2_body(40.0))
    after = httpx.get(f"{cached_server.url}/v2/models/m/stats").json()

    def counts(doc: dict[str, list[dict[str, dict[str, dict[str, int]]]]]) -> tuple[int, int]:
        stats = doc["model_stats"][0]["inference_stats"]
        return stats["cache_hit"]["count"], stats["cache_miss"]["count"]

    hits, misses = counts(before)
    assert counts(after) == (hits + 1, misses + 1)


def test_models_without_the_cache_send_no_header(live_server: ServerProcess) -> None:
    answer = httpx.post(f"{live_server.url}/predict", json={"inputs": [0.0] * 4})
    assert answer.status_code == 200
    assert "x-cache" not in answer.headers


def test_json_and_binary_requests_of_the_same_tensor_share_an_entry(
    cached_server: ServerProcess,
) -> None:
    url = f"{cached_server.url}/v2/models/m/infer"
    first = httpx.post(url, json=v2_body(50.0))
    raw = np.asarray([[50.0, 50.0]], dtype=np.float32).tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [1, 2],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    second = httpx.post(
        url,
        content=header + raw,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    )
    assert (first.headers["x-cache"], second.status_code) == ("miss", 200)
    assert second.headers["x-cache"] == "hit"

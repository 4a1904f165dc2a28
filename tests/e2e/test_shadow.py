"""Shadow traffic on a real server: REST and gRPC answers mirrored to another version,
disagreements found against other weights and none against an identical copy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from inferd.example import TINY, mlp_weights, tensor_yaml, write_onnx
from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess, wait_until

TOKEN = "shadow-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
REST_REQUESTS = 12
GRPC_REQUESTS = 4
MIRRORED = REST_REQUESTS + GRPC_REQUESTS


def shadowed_model(root: Path, name: str, primary_seed: int, shadow_seed: int) -> None:
    """Version 2 (latest: the primary) and version 1 (the shadow), every answer mirrored."""
    write_onnx(mlp_weights(TINY, seed=shadow_seed), root / name / "1" / "model.onnx")
    write_onnx(mlp_weights(TINY, seed=primary_seed), root / name / "2" / "model.onnx")
    shadow = {"version": "1", "fraction": 1.0, "max_in_flight": 1024}
    extra: dict[str, Any] = {"version_policy": {"all": True}, "shadow": shadow}
    (root / name / "model.yaml").write_text(tensor_yaml(TINY, "onnx", **extra))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("shadow-models")
    shadowed_model(root, "other", primary_seed=0, shadow_seed=7)
    shadowed_model(root, "same", primary_seed=0, shadow_seed=0)
    process = ServerProcess(root, env={"INFERENCE_SERVER__ADMIN_TOKEN": TOKEN})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def rows(n: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(n).standard_normal((1, TINY[0])).astype(np.float32)


def send(server: ServerProcess, model: str) -> None:
    """REST and gRPC requests, each answered by the primary (version 2)."""
    for n in range(REST_REQUESTS):
        tensor = {
            "name": "input",
            "datatype": "FP32",
            "shape": [1, 4],
            "data": rows(n).ravel().tolist(),
        }
        answer = httpx.post(f"{server.url}/v2/models/{model}/infer", json={"inputs": [tensor]})
        assert (answer.status_code, answer.json()["model_version"]) == (200, "2")
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for n in range(GRPC_REQUESTS):
            request = pb.ModelInferRequest(
                model_name=model,
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name="input", datatype="FP32", shape=[1, 4]
                    )
                ],
                raw_input_contents=[rows(100 + n).tobytes()],
            )
            assert stub.ModelInfer(request, timeout=10).model_version == "2"


def shadow_state(server: ServerProcess, model: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/v2/models/{model}/shadow", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    state: dict[str, Any] = answer.json()["shadow"]
    return state


def settled(server: ServerProcess, model: str) -> dict[str, Any]:
    """The shadow's state once every sent request has an outcome."""
    wait_until(
        lambda: sum(shadow_state(server, model)["counts"].values()) >= MIRRORED,
        what=f"{MIRRORED} outcomes of {model}'s shadow",
    )
    return shadow_state(server, model)


def metric(server: ServerProcess, model: str, outcome: str) -> str:
    text = httpx.get(f"{server.url}/metrics").text
    prefix = f'inferd_shadow_requests_total{{model="{model}",outcome="{outcome}",version="1"}} '
    return next((line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)), "")


def test_other_weights_disagree_on_every_request(server: ServerProcess) -> None:
    send(server, "other")
    state = settled(server, "other")
    assert state["counts"] == {"agree": 0, "disagree": MIRRORED, "dropped": 0, "error": 0}
    assert sum(state["disagreements"].values()) == MIRRORED
    assert len(state["recent"]) == MIRRORED  # within the ring's 20
    example = state["recent"][0]
    assert example["inputs"][0]["data"] == pytest.approx(rows(0).ravel().tolist())
    assert example["outputs"][0]["max_abs"] > 0
    assert metric(server, "other", "disagree") == f"{float(MIRRORED)}"
    assert metric(server, "other", "agree") == "0.0"


def test_an_identical_copy_agrees_on_every_request(server: ServerProcess) -> None:
    send(server, "same")
    state = settled(server, "same")
    assert state["counts"] == {"agree": MIRRORED, "disagree": 0, "dropped": 0, "error": 0}
    assert (state["disagreements"], state["recent"]) == ({}, [])
    assert metric(server, "same", "agree") == f"{float(MIRRORED)}"
    assert metric(server, "same", "disagree") == "0.0"


def test_the_shadow_state_needs_the_admin_key(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/v2/models/same/shadow").status_code == 401
    put = httpx.put(f"{server.url}/v2/models/same/shadow", json=None)
    assert put.status_code == 401
    assert shadow_state(server, "same") is not None  # still on

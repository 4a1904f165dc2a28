"""A model that raises, and one that fails to load, seen from every transport of a real
server: the client gets a fixed message with the request id, the log gets the rest."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess, wait_until
from tests.core.store.test_repository import make_model
from tests.core.test_service import raiser_repository

SECRET = "/srv/secret"
TOKEN = "s3cret"
X = {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server whose log goes to ``tmp_path / "server.log"``."""
    root = raiser_repository(tmp_path / "repo")
    broken = make_model(root, "broken", ["1"])
    (broken / "1" / "model.py").write_text(f"raise RuntimeError('{SECRET}/key is missing')\n")
    with (tmp_path / "server.log").open("wb") as log:
        process = ServerProcess(
            root, "--admin-token", TOKEN, "--default-model", "raiser", stderr=log
        )

    def raiser_ready() -> bool:
        if process.process.poll() is not None:
            raise AssertionError(f"server exited with {process.process.returncode}")
        try:
            return httpx.get(f"{process.url}/v2/models/raiser/ready").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(raiser_ready, 60, "model raiser to be ready")
        yield process
    finally:
        process.stop()


def test_internal_errors_and_load_failures(server: ServerProcess, tmp_path: Path) -> None:
    answers: dict[str, str] = {}

    v2 = httpx.post(
        f"{server.url}/v2/models/raiser/infer",
        json={"inputs": [X]},
        headers={"X-Request-Id": "rest-1"},
    )
    assert (v2.status_code, v2.json()) == (
        500,
        {"error": "internal error (request id rest-1)", "request_id": "rest-1"},
    )
    assert v2.headers["x-request-id"] == "rest-1"
    answers["rest-1"] = v2.text

    # Without X-Request-Id the server makes one (a V2 body's "id" is the response's, only).
    by_id = httpx.post(f"{server.url}/v2/models/raiser/infer", json={"id": "v2-1", "inputs": [X]})
    made_id = by_id.headers["x-request-id"]
    assert re.fullmatch("[0-9a-f]{32}", made_id)
    assert (by_id.status_code, by_id.json()) == (
        500,
        {"error": f"internal error (request id {made_id})", "request_id": made_id},
    )
    answers[made_id] = by_id.text

    predict = httpx.post(f"{server.url}/predict", json={"inputs": [1, 2]})
    assert predict.status_code == 500
    made = re.fullmatch(r"internal error \(request id ([0-9a-f]{32})\)", predict.json()["error"])
    assert made is not None
    assert made.group(1) == predict.headers["x-request-id"] == predict.json()["request_id"]
    answers[made.group(1)] = predict.text

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(
            model_name="raiser",
            id="grpc-1",
            inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
            raw_input_contents=[np.ones((1, 2), np.float32).tobytes()],
        )
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, metadata=(("x-request-id", "grpc-1"),))
        assert caught.value.code() is grpc.StatusCode.INTERNAL
        assert caught.value.details() == "internal error (request id grpc-1)"
        answers["grpc-1"] = caught.value.details()

        admin = stub.RepositoryIndex(
            pb.RepositoryIndexRequest(), metadata=(("authorization", f"Bearer {TOKEN}"),)
        )
    grpc_admin = {m.name: m.reason for m in admin.models}
    assert grpc_admin["broken"] == f"RuntimeError: {SECRET}/key is missing"

    with connect(
        server.url.replace("http://", "ws://") + "/predict/stream",
        additional_headers={"X-Request-Id": "ws-1"},
    ) as ws:
        ws.send(json.dumps({"inputs": [1, 2], "id": "ws-1"}))
        reply = json.loads(ws.recv(10))
    assert (reply["error"], reply["code"], reply["request_id"]) == (
        "internal error (request id ws-1)",
        500,
        "ws-1",
    )
    answers["ws-1"] = json.dumps(reply)

    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'inferd_model_failures_total{model="raiser",version="1"} 5.0' in metrics

    ready = httpx.get(f"{server.url}/ready")
    assert ready.status_code == 503
    states = {m["name"]: (m["state"], m["reason"]) for m in ready.json()["models"]}
    assert states["broken"] == ("FAILED", "load_failed: artifact_error")
    metadata = httpx.get(f"{server.url}/v2/models/broken")
    assert metadata.json()["error"] == (
        "model 'broken' is not ready (version 1: FAILED load_failed: artifact_error)"
    )
    full = httpx.post(
        f"{server.url}/v2/repository/index", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    assert {r["name"]: r["reason"] for r in full}["broken"] == (
        f"RuntimeError: {SECRET}/key is missing"
    )
    for text in (*answers.values(), ready.text, metadata.text):
        assert SECRET not in text

    assert server.stop() == 0
    log = (tmp_path / "server.log").read_text()
    for request_id in answers:
        line = (  # the log line names the request it was written for, and says so
            f"inferd.service [{request_id}]: "
            f"model 'raiser' version '1' failed (request id {request_id}): model 'raiser' "
            f"failed: ValueError: cannot open {SECRET}/weights.bin"
        )
        assert line in log
    # Each with its traceback, down to the model's own line.
    assert log.count("raise ValueError('cannot open /srv/secret/weights.bin')") == len(answers)

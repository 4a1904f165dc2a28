"""A model that never returns, and requests that arrive while the server drains."""

from __future__ import annotations

import http.client
import json
import signal
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.abuse.conftest import assert_probe_fast, probing, write_config
from tests.conftest import ServerProcess, wait_until

HUNG_MODEL = """
import pathlib
import time

RELEASE = pathlib.Path(__file__).with_name("release")


class Model:
    def predict(self, inputs):
        while not RELEASE.exists():
            time.sleep(0.05)
        return {"y": inputs["x"]}
"""

MAX_BATCH_TIME_S = 1.0
UNLOAD_GRACE_S = 1.0
SHUTDOWN_GRACE_S = 3.0
#: What a busy machine may add to a deadline: a request's round trip, process exit.
SLACK_S = 2.5
ADMIN_TOKEN = "lifecycle-admin"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def hung_model(root: Path, name: str, max_batch_time_s: float) -> Path:
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(textwrap.dedent(HUNG_MODEL))
    (root / name / "model.yaml").write_text(
        "runtime: python\nwarmup: false\n"
        f"max_batch_time_s: {max_batch_time_s}\n"
        "inputs: [{name: x, datatype: FP32, shape: [-1, 2]}]\n"
        "outputs: [{name: y, datatype: FP32, shape: [-1, 2]}]\n"
    )
    return root / name / "1" / "release"


def body(name: str = "x") -> dict[str, object]:
    return {"inputs": [{"name": name, "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}


def echo_model(root: Path) -> None:
    """A model that answers at once (the hung one, released): a Python model, so that the
    server starts without importing torch."""
    hung_model(root, "echo", 600).touch()


def assert_echoed(answer: httpx.Response) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == [1, 2]


@pytest.fixture
def hung_server(tmp_path: Path) -> tuple[ServerProcess, list[Path]]:
    repo = tmp_path / "models"
    echo_model(repo)
    releases = [hung_model(repo, "hung", MAX_BATCH_TIME_S), hung_model(repo, "stuck", 600)]
    config = write_config(
        tmp_path / "inferd.yaml",
        {"models": {"unload_grace_s": UNLOAD_GRACE_S}},
        server={"shutdown_grace_s": SHUTDOWN_GRACE_S},
    )
    server = ServerProcess(
        repo, "--config", str(config), "--grpc-port", "0", "--admin-token", ADMIN_TOKEN
    )
    try:
        server.wait_ready()
        yield server, releases
    finally:
        server.stop()
        for release in releases:
            release.touch()


def test_a_hung_model_is_reported_unloaded_and_does_not_hold_up_shutdown(
    hung_server: tuple[ServerProcess, list[Path]],
) -> None:
    server, _ = hung_server
    with probing(server) as probe, httpx.Client(base_url=server.url, timeout=30) as client:
        started = time.monotonic()
        hung = client.post("/v2/models/hung/infer", json=body())
        assert hung.status_code == 503
        assert "max_batch_time_s" in hung.json()["error"]
        assert time.monotonic() - started < MAX_BATCH_TIME_S + SLACK_S
        # Reported: the model's readiness and the index say why; the server stays ready.
        ready = client.get("/v2/models/hung/ready")
        assert ready.status_code == 503
        assert ready.json()["reason"].startswith("unhealthy")
        index = {r["name"]: r for r in client.post("/v2/repository/index", headers=AS_ADMIN).json()}
        assert index["hung"]["state"] == "UNHEALTHY"
        assert "max_batch_time_s" in index["hung"]["reason"]
        assert client.get("/ready").status_code == 200
        assert_echoed(client.post("/v2/models/echo/infer", json=body()))
        # New requests fail fast: sooner than a batch limit, so they waited for no batch.
        started = time.monotonic()
        assert client.post("/v2/models/hung/infer", json=body()).status_code == 503
        assert time.monotonic() - started < MAX_BATCH_TIME_S
        # Unloaded within its grace, though its thread never returns.
        started = time.monotonic()
        assert client.post("/v2/repository/models/hung/unload", headers=AS_ADMIN).status_code == 200
        assert time.monotonic() - started < UNLOAD_GRACE_S + SLACK_S
        assert_echoed(client.post("/v2/models/echo/infer", json=body()))
    assert_probe_fast(probe)

    # Another model hangs, with no watchdog soon enough: SIGTERM still ends the process.
    threading.Thread(
        target=lambda: httpx.post(f"{server.url}/v2/models/stuck/infer", json=body(), timeout=60),
        daemon=True,
    ).start()

    def reached_the_model() -> bool:
        stats = httpx.get(f"{server.url}/v2/models/stuck/stats").json()["model_stats"][0]
        return bool(stats["inference_stats"]["queue"]["count"])

    wait_until(reached_the_model, 10, "the request to reach the stuck model")
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(SHUTDOWN_GRACE_S + SLACK_S) == 0
    assert time.monotonic() - started < SHUTDOWN_GRACE_S + SLACK_S


def test_requests_on_open_connections_during_drain_get_503_and_close(tmp_path: Path) -> None:
    echo_model(tmp_path / "models")
    # Idle connections are closed after their keep-alive timeout, drain or not: a long one,
    # so that a slow moment of the machine cannot close them before they are used again.
    env = {"INFERENCE_LIMITS__HTTP__KEEPALIVE_TIMEOUT_S": "20"}
    server = ServerProcess(tmp_path / "models", "--grpc-port", "0", env=env)
    try:
        server.wait_ready()
        payload = json.dumps(body())
        headers = {"Content-Type": "application/json"}
        connections = [http.client.HTTPConnection("127.0.0.1", server.http_port) for _ in range(32)]
        for connection in connections:
            connection.request("POST", "/v2/models/echo/infer", payload, headers)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
        server.process.send_signal(signal.SIGTERM)

        def draining() -> bool:  # asked on a new connection: the open ones stay unused
            return httpx.get(f"{server.url}/ready", timeout=5).status_code == 503

        wait_until(draining, 10, "the server to begin draining")
        answers = []
        for connection in connections:
            connection.request("POST", "/v2/models/echo/infer", payload, headers)
            answer = connection.getresponse()
            answers.append(
                (
                    answer.status,
                    answer.getheader("connection"),
                    answer.getheader("retry-after"),
                    answer.read(),
                )
            )
        assert {a[:3] for a in answers} == {(503, "close", "1")}
        assert {json.loads(a[3])["error"] for a in answers} == {"the server is shutting down"}
        assert server.process.wait(30) == 0
    finally:
        server.stop()

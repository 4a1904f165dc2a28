"""Deadlines, graceful shutdown under load and multi-worker serving, on real processes."""

from __future__ import annotations

import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, wait_until, wait_workers_ready, worker_pids

SLOW_MODEL = """
import time
import numpy as np

class Model:
    def predict(self, inputs):
        x = inputs["x"]
        # Records every row that reached the model, then takes its time.
        with open(__file__.replace("model.py", "seen.log"), "a") as log:
            for row in x:
                log.write(f"{row[0]:g}\\n")
        time.sleep(DELAY)
        return {"y": x * 2}
"""


def slow_repo(root: Path, delay: float, max_batch_size: int = 4) -> Path:
    folder = root / "slow"
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(SLOW_MODEL.replace("DELAY", str(delay)))
    (folder / "model.yaml").write_text(
        "runtime: python\nwarmup: false\n"
        f"max_batch_size: {max_batch_size}\n"
        "inputs: [{name: x, datatype: FP32, shape: [-1, 2]}]\n"
        "outputs: [{name: y, datatype: FP32, shape: [-1, 2]}]\n"
    )
    return folder / "1" / "seen.log"


def body(value: float) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [value, value]}]}


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]
    return sum(values)


def test_deadline_drops_queued_work(tmp_path: Path) -> None:
    seen = slow_repo(tmp_path, delay=1.0, max_batch_size=1)
    server = ServerProcess(tmp_path, "--grpc-port", "0")
    try:
        server.wait_ready()
        with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=server.url, timeout=30) as client:
            first = pool.submit(client.post, "/v2/models/slow/infer", json=body(1))
            wait_until(lambda: seen.exists(), what="the first request to reach the model")
            late = client.post(
                "/v2/models/slow/infer", json=body(7), headers={"Inference-Timeout-Ms": "100"}
            )
            assert late.status_code == 504, late.text
            assert "deadline" in late.json()["error"]
            assert first.result().status_code == 200
            bad = client.post(
                "/v2/models/slow/infer", json=body(1), headers={"Inference-Timeout-Ms": "soon"}
            )
            assert bad.status_code == 400
            assert client.get("/healthz").status_code == 200
        # The expired request never ran.
        assert seen.read_text().split() == ["1"]
    finally:
        server.stop()


def test_sigterm_drains_accepted_work_then_exits_zero(tmp_path: Path) -> None:
    seen = slow_repo(tmp_path, delay=0.5)
    server = ServerProcess(tmp_path, "--grpc-port", "0")
    server.wait_ready()
    requests = 12
    with (
        ThreadPoolExecutor(requests) as pool,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        futures = [
            pool.submit(client.post, "/v2/models/slow/infer", json=body(i)) for i in range(requests)
        ]
        wait_until(
            lambda: metric(server.url, "inferd_in_flight_requests") >= requests,
            what="all requests in flight",
        )
        os.kill(server.process.pid, signal.SIGTERM)
        wait_until(lambda: client.get("/ready").status_code == 503, what="readiness to turn 503")
        refused = client.post("/v2/models/slow/infer", json=body(99))
        assert refused.status_code == 503
        results = [f.result() for f in futures]
    assert [r.status_code for r in results] == [200] * requests
    assert [r.json()["outputs"][0]["data"] for r in results] == [
        [2.0 * i, 2.0 * i] for i in range(requests)
    ]
    assert server.process.wait(30) == 0
    assert "99" not in seen.read_text().split()


@pytest.mark.parametrize("workers", [2])
def test_workers_share_the_port_aggregate_metrics_and_restart(
    example_repo: Path, workers: int
) -> None:
    server = ServerProcess(
        example_repo,
        "--workers",
        str(workers),
        "--default-model",
        "tiny",
        "--grpc-port",
        "0",
        env={"INFERENCE_SERVER__ADMIN_TOKEN": "workers-admin"},
    )
    try:
        children = lambda: worker_pids(server.process.pid)  # noqa: E731
        wait_until(lambda: len(children()) == workers, what="the workers")
        wait_workers_ready(server.url, children())
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(20):
                assert client.post("/predict", json={"inputs": [1, 2, 3, 4]}).status_code == 200
        # Whichever worker answers the scrape, it reports all 20.
        assert metric(server.url, "inferd_requests_total") == 20
        # So do /ready and the Triton statistics, on fresh connections (either worker).
        for _ in range(6):
            ready = httpx.get(f"{server.url}/ready").json()
            assert sorted(w["pid"] for w in ready["workers"]) == sorted(children())
            stats = httpx.get(f"{server.url}/v2/models/tiny/stats").json()["model_stats"][0]
            assert stats["inference_stats"]["success"]["count"] == 20
        # A load or unload would reach one worker: refused, and every worker serves on.
        admin = {"Authorization": "Bearer workers-admin"}
        for action in ("unload", "load"):
            answer = httpx.post(f"{server.url}/v2/repository/models/tiny/{action}", headers=admin)
            assert answer.status_code == 400
            assert answer.json()["error"] == (
                f"this server runs {workers} worker processes (server.workers), each with its "
                f"own models; a{'n' if action == 'unload' else ''} {action} at run time needs "
                "one process (change the repository and let models.poll_interval_s reload "
                "every worker, or restart)"
            )
        for _ in range(10):  # fresh connections: either worker
            answer = httpx.post(f"{server.url}/predict", json={"inputs": [1, 2, 3, 4]})
            assert answer.status_code == 200
            listed = httpx.get(f"{server.url}/ready").json()["models"]
            index = httpx.post(f"{server.url}/v2/repository/index", headers=admin).json()
            states = {(m["name"], m["version"], m["state"]) for m in listed}
            assert states == {(m["name"], m["version"], m["state"]) for m in index}
            assert ("tiny", "1", "READY") in states
        victim = children()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: len(children()) == workers and victim not in children(),
            what="a replacement worker",
        )
        # Each worker, the replacement too, serves on the port by itself.
        wait_workers_ready(server.url, children())
        assert httpx.post(f"{server.url}/predict", json={"inputs": [1, 2, 3, 4]}).status_code == 200
    finally:
        assert server.stop() == 0


def test_a_stop_at_any_moment_of_worker_start_up_drains(example_repo: Path) -> None:
    # The workers are told to stop while they start (they are spawned with the stop
    # signals blocked until their loop handles them): each drains and exits 0.
    server = ServerProcess(example_repo, "--workers", "2")
    wait_until(lambda: len(worker_pids(server.process.pid)) == 2, what="the workers")
    assert server.stop() == 0

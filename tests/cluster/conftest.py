"""Three inferd replicas sharing one real Redis, and the load that runs through them."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import yaml

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.cluster.proxies import HAProxy, Nginx, Replica
from tests.conftest import RedisServer, clean_environment, free_port, serve_command, wait_until

#: Each batch takes a few milliseconds, so that requests are in flight when a replica goes.
MODEL = """
import time


class Model:
    def predict(self, inputs):
        time.sleep(0.003)
        return {"y": inputs["x"] * 2}
"""


def cluster_repo(root: Path) -> Path:
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "1" / "model.py").write_text(MODEL)
    config = {
        "runtime": "python",
        "warmup": False,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        "cache": {"enabled": True, "ttl_s": 120},
    }
    (root / "m" / "model.yaml").write_text(yaml.safe_dump(config))
    return root


class InferdReplica(Replica):
    """One ``inferd serve`` process on fixed ports, so that it can be restarted in place."""

    def __init__(self, repository: Path, redis_uri: str) -> None:
        super().__init__(free_port(), free_port())
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.repository = repository
        self.env = clean_environment()
        self.env["INFERENCE_STORAGE__REDIS_URI"] = redis_uri
        # The default 50 ms bound is for a Redis on the network; these tests are about
        # sharing, and a replica's first Redis connection on a busy 2-core machine can take
        # longer (a call past the bound is a miss, and the store is bypassed for a second).
        self.env["INFERENCE_STORAGE__TIMEOUT_MS"] = "2000"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = serve_command(self.repository, self.http_port, self.grpc_port)
        self.process = subprocess.Popen(command, env=self.env)

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"replica exited with {self.process.returncode}")
        try:
            return httpx.get(f"{self.url}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self) -> None:
        wait_until(self.ready, 60, f"replica {self.http_port} to be ready")

    def terminate(self) -> int:
        """SIGTERM, and the exit code once it has drained."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.terminate()


@dataclasses.dataclass
class Cluster:
    redis: RedisServer
    replicas: list[InferdReplica]
    nginx: Nginx
    haproxy: HAProxy


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    redis = RedisServer(root)
    repository = cluster_repo(root / "models")
    replicas = [InferdReplica(repository, redis.uri) for _ in range(3)]
    started: list[object] = [redis]
    try:
        for replica in replicas:
            replica.start()
            started.append(replica)
        for replica in replicas:
            replica.wait_ready()
        (root / "nginx").mkdir()
        (root / "haproxy").mkdir()
        nginx = Nginx(root / "nginx", replicas)
        started.append(nginx)
        haproxy = HAProxy(root / "haproxy", replicas)
        started.append(haproxy)
        wait_until(
            lambda: all(s["status"] == "UP" for s in haproxy.servers().values()),
            10,
            "haproxy to see every replica up",
        )
        yield Cluster(redis, replicas, nginx, haproxy)
    finally:
        for thing in reversed(started):
            thing.stop()  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    ok: bool
    detail: str


def v2_body(value: float) -> dict[str, object]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [value, 1.0]}]}


class Load:
    """Clients sending inference without pause until stopped: ``rest`` threads through
    ``url``, and one gRPC client through ``grpc_target`` when given. Every answer is
    checked, not only its status."""

    def __init__(self, url: str, rest: int = 4, grpc_target: str | None = None) -> None:
        self.outcomes: list[Outcome] = []
        #: Requests sent again after the proxy closed an idle connection unanswered.
        self.resent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._rest, args=(url, n), daemon=True) for n in range(rest)
        ]
        if grpc_target is not None:
            self._threads.append(threading.Thread(target=self._grpc, args=(grpc_target,)))
        for thread in self._threads:
            thread.start()

    def _record(self, started: float, ok: bool, detail: str) -> None:
        with self._lock:
            self.outcomes.append(Outcome(started, time.monotonic(), ok, detail))

    def _rest(self, url: str, n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            value = float(n * 1_000_000)
            while not self._stop.is_set():
                value += 1
                started = time.monotonic()
                try:
                    answer = self._post(client, value)
                    ok = answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [
                        value * 2,
                        2.0,
                    ]
                    self._record(started, ok, f"{answer.status_code} {answer.text[:200]}")
                except httpx.HTTPError as exc:
                    self._record(started, False, f"{type(exc).__name__}: {exc}")

    def _post(self, client: httpx.Client, value: float) -> httpx.Response:
        """One inference; sent a second time only when the proxy closed the keep-alive
        connection without answering (nginx does so to idle connections when it reloads; the
        client sees the close, or a reset when its request crossed the close on the wire):
        what HTTP clients do for a request marked idempotent (Go's net/http: Idempotency-Key)."""
        headers = {"Idempotency-Key": f"{threading.get_ident()}-{value}"}
        try:
            return client.post("/v2/models/m/infer", json=v2_body(value), headers=headers)
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            closed = "without sending a response" in str(exc) or "reset by peer" in str(exc)
            if not closed:
                raise
            with self._lock:
                self.resent += 1
            return client.post("/v2/models/m/infer", json=v2_body(value), headers=headers)

    def _grpc(self, target: str) -> None:
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            value = -1.0
            while not self._stop.is_set():
                value -= 1
                x = np.asarray([[value, 1.0]], dtype=np.float32)
                request = pb.ModelInferRequest(
                    model_name="m",
                    inputs=[
                        pb.ModelInferRequest.InferInputTensor(
                            name="x", datatype="FP32", shape=[1, 2]
                        )
                    ],
                    raw_input_contents=[x.tobytes()],
                )
                started = time.monotonic()
                try:
                    reply = stub.ModelInfer(request, timeout=30)
                    y = np.frombuffer(reply.raw_output_contents[0], dtype=np.float32)
                    self._record(started, y.tolist() == [value * 2, 2.0], f"grpc {y.tolist()}")
                except grpc.RpcError as exc:
                    self._record(started, False, f"grpc {exc.code()}: {exc.details()}")

    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def wait_for(self, more: int) -> None:
        """Until ``more`` further answers have come (the load is flowing)."""
        target = self.count() + more
        wait_until(lambda: self.count() >= target, 30, f"{more} more answers")

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return self.outcomes

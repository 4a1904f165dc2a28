"""Each server owns its ports, on real processes: a second server on a used port exits 1 at
once; the workers of one supervisor share both ports; start-up logs one URL per listener."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from inferd.grpc.protos import grpc_service_pb2, grpc_service_pb2_grpc
from inferd.ports import CHANGE
from tests.conftest import (
    ServerProcess,
    clean_environment,
    free_port,
    paused,
    ready,
    wait_until,
    worker_pids,
)

MODES = {"single": (), "workers": ("--workers", "2")}

ECHO_MODEL = """
class Model:
    def predict(self, inputs):
        return {"y": inputs["x"]}
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Python model: a server on it starts in about the time Python takes."""
    root = tmp_path_factory.mktemp("echo")
    (root / "echo" / "1").mkdir(parents=True)
    (root / "echo" / "1" / "model.py").write_text(ECHO_MODEL)
    (root / "echo" / "model.yaml").write_text(
        "runtime: python\n"
        "inputs: [{name: x, datatype: FP32, shape: [-1, 2]}]\n"
        "outputs: [{name: y, datatype: FP32, shape: [-1, 2]}]\n"
    )
    return root


def serve_command(repository: Path, http_port: int, grpc_port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "inferd",
        "serve",
        str(repository),
        "--host",
        "127.0.0.1",
        "--port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        *extra,
    ]


@pytest.fixture(scope="module", params=list(MODES))
def first(request: pytest.FixtureRequest, repo: Path) -> Iterator[ServerProcess]:
    """A running server, single or with workers, that owns its two ports."""
    server = ServerProcess(repo, *MODES[request.param])
    try:
        server.wait_ready()
        yield server
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("second", list(MODES))
@pytest.mark.parametrize("kind", ["http", "grpc"])
def test_a_second_server_on_a_used_port_exits_1(
    first: ServerProcess, repo: Path, kind: str, second: str
) -> None:
    used = first.http_port if kind == "http" else first.grpc_port
    http_port, grpc_port = (used, free_port()) if kind == "http" else (free_port(), used)
    finished = subprocess.run(
        serve_command(repo, http_port, grpc_port, *MODES[second]),
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 1
    assert (
        finished.stderr
        == f"inferd: port {used} ({kind}) is already in use; choose another with {CHANGE[kind]}\n"
    )
    # The first server still serves, on both ports.
    assert httpx.get(f"{first.url}/ready", timeout=10).status_code == 200
    assert server_live(first.grpc_target)


def server_live(target: str, timeout: float = 10.0) -> bool:
    """ServerLive on a connection of its own (not one shared with earlier channels)."""
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            reply = stub.ServerLive(grpc_service_pb2.ServerLiveRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(reply.live)


def test_workers_share_both_ports(repo: Path) -> None:
    server = ServerProcess(repo, "--workers", "2")
    try:
        wait_until(lambda: len(worker_pids(server.process.pid)) == 2, what="the workers")
        one, other = worker_pids(server.process.pid)
        # A stopped worker accepts nothing: whatever answers is the other one.
        for serving, stopped in ((one, other), (other, one)):
            with paused(stopped):
                wait_until(
                    lambda: ready(server.url, "/v2/health/ready"),
                    timeout=60,
                    what=f"worker {serving} ready",
                )
                # New gRPC connections that the kernel gives the stopped worker time out.
                wait_until(
                    lambda: server_live(server.grpc_target, timeout=1),
                    timeout=60,
                    what=f"worker {serving} to answer gRPC",
                )
    finally:
        assert server.stop() == 0


class LogReader:
    """A server process whose stderr is read line by line as it comes."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, env=clean_environment(), stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def matching(self, pattern: str) -> list[re.Match[str]]:
        return [m for line in list(self.lines) if (m := re.search(pattern, line))]

    def stop(self) -> int:
        self.process.terminate()
        code = self.process.wait(60)
        self._thread.join(10)
        return code


@pytest.mark.parametrize("mode", list(MODES))
def test_start_up_logs_one_url_per_listener(repo: Path, mode: str) -> None:
    grpc_port = free_port()
    server = LogReader(serve_command(repo, 0, grpc_port, "--log-level", "info", *MODES[mode]))
    # A server's lines carry the request id ("-" outside a request); the supervisor's do not.
    name = {"single": r"inferd \[-\]", "workers": "inferd"}[mode]
    rest = rf" INFO {name}: REST on (http://127\.0\.0\.1:(\d+))$"
    grpc_line = rf" INFO {name}: gRPC on 127\.0\.0\.1:{grpc_port}$"
    try:
        wait_until(lambda: bool(server.matching(rest)), what="the REST line")
        [found] = server.matching(rest)
        url, port = found.group(1), int(found.group(2))
        assert port != 0  # the port the system picked, not the one asked for
        wait_until(lambda: ready(url), timeout=60, what="the server at the logged URL")
        wait_until(lambda: bool(server.matching(grpc_line)), what="the gRPC line")
        assert server_live(f"127.0.0.1:{grpc_port}")
    finally:
        assert server.stop() == 0
    # Once, whatever the number of workers.
    assert len(server.matching(rest)) == 1
    assert len(server.matching(grpc_line)) == 1

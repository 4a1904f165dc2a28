"""Swaps on a real server under REST and gRPC load: version swaps fail no request and
switch each client's answering version exactly once; concurrent load/unload callers leave
the server live and ready; a polling server picks up a new version by itself."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from itertools import groupby
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from inferd.grpc.protos import grpc_service_pb2 as pb
from inferd.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess, until, wait_until
from tests.core.store.test_polling import BROKEN, add_model, add_version

TOKEN = "swap-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0, 0]}]}
GRPC_REQUEST = pb.ModelInferRequest(
    model_name="m",
    inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
    raw_input_contents=[np.zeros((1, 2), dtype=np.float32).tobytes()],
)
#: Clients of each protocol, each sending one request after the other.
CLIENTS = 8
SWAPS = 20
#: Load/unload callers at once, and the calls each makes in turn.
CALLERS = 32
CALLS = 3
MIN_RATE = 200.0
#: Generous: the test machine is small and shared.
WAIT_S = 60.0


@dataclasses.dataclass
class Client:
    """What one client saw: the answering versions in answer order, and every failure."""

    name: str
    versions: list[str] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)

    def answered(self, version: str, value: float) -> None:
        # The versioned model adds its version's number: the answer says who computed it.
        if value != float(version):
            self.failures.append(f"version {version} answered {value}")
        self.versions.append(version)


class Load:
    """REST and gRPC clients in this process, sending until :meth:`stop`."""

    def __init__(self, server: ServerProcess) -> None:
        self._server = server
        self.clients = [Client(f"rest-{i}") for i in range(CLIENTS)]
        self.clients += [Client(f"grpc-{i}") for i in range(CLIENTS)]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = self.stopped = 0.0

    def start(self) -> None:
        self.started = time.monotonic()
        for client in self.clients:
            run = self._rest if client.name.startswith("rest") else self._grpc
            self._tasks.append(asyncio.create_task(run(client)))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self.stopped = time.monotonic()

    async def _rest(self, client: Client) -> None:
        async with httpx.AsyncClient(base_url=self._server.url, timeout=WAIT_S) as http:
            while not self._stop.is_set():
                try:
                    response = await http.post("/v2/models/m/infer", json=BODY)
                except httpx.HTTPError as exc:
                    client.failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    client.failures.append(f"{response.status_code} {response.text}")
                    continue
                answer = response.json()
                client.answered(answer["model_version"], answer["outputs"][0]["data"][0])

    async def _grpc(self, client: Client) -> None:
        async with grpc.aio.insecure_channel(self._server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while not self._stop.is_set():
                try:
                    reply = await stub.ModelInfer(GRPC_REQUEST, timeout=WAIT_S)
                except grpc.aio.AioRpcError as exc:
                    client.failures.append(f"{exc.code().name} {exc.details()}")
                    continue
                value = np.frombuffer(reply.raw_output_contents[0], dtype=np.float32)[0]
                client.answered(reply.model_version, float(value))

    def answers(self) -> int:
        return sum(len(c.versions) for c in self.clients)

    def failures(self) -> list[str]:
        return [f"{c.name}: {f}" for c in self.clients for f in c.failures]

    async def answered_by_all(self, version: str) -> None:
        """Every client's latest answer came from ``version``."""
        await until(
            lambda: all(c.versions and c.versions[-1] == version for c in self.clients),
            WAIT_S,
            f"every client to be answered by version {version}",
        )


@pytest.fixture
async def load_on() -> AsyncIterator[Callable[[ServerProcess], Awaitable[Load]]]:
    loads: list[Load] = []

    async def start(server: ServerProcess) -> Load:
        load = Load(server)
        loads.append(load)
        load.start()
        await load.answered_by_all("1")
        return load

    yield start
    for load in loads:
        await load.stop()


def served(tmp_path: Path, *extra: str) -> tuple[Path, ServerProcess]:
    model = add_model(tmp_path / "repo", "m", ["1"])
    server = ServerProcess(tmp_path / "repo", "--admin-token", TOKEN, *extra)
    server.wait_ready()
    return model, server


async def test_twenty_swaps_and_a_broken_version_under_load_fail_no_request(
    tmp_path: Path, load_on: Callable[[ServerProcess], Awaitable[Load]]
) -> None:
    model, server = served(tmp_path)
    try:
        load = await load_on(server)
        async with httpx.AsyncClient(base_url=server.url, headers=ADMIN, timeout=WAIT_S) as admin:
            for version in range(2, SWAPS + 2):
                add_version(model, str(version))
                response = await admin.post("/v2/repository/models/m/load")
                assert response.status_code == 200, response.text
                await load.answered_by_all(str(version))
            last = str(SWAPS + 1)
            add_version(model, "99", BROKEN)
            response = await admin.post("/v2/repository/models/m/load")
            assert response.status_code == 503
            assert response.json()["error"] == (
                "model 'm' failed to load: version 99: RuntimeError: truncated upload"
            )
            # The old version serves on: every client gets more answers, all from it.
            counts = [len(c.versions) for c in load.clients]
            await until(
                lambda: all(
                    len(c.versions) >= n + 20 for c, n in zip(load.clients, counts, strict=True)
                ),
                WAIT_S,
                "answers after the broken version",
            )
            ready = await admin.get("/ready")
            assert ready.status_code == 200, ready.text
        await load.stop()
        assert load.failures() == []
        rate = load.answers() / (load.stopped - load.started)
        assert rate >= MIN_RATE, f"{load.answers()} answers at {rate:.0f}/s"
        # Per client, in answer order: 1..1 2..2 ... 21..21, nothing after the broken 99.
        expected = [str(v) for v in range(1, SWAPS + 2)]
        for client in load.clients:
            assert [v for v, _ in groupby(client.versions)] == expected, client.name
        assert all(c.versions[-1] == last for c in load.clients)
    finally:
        server.stop()


#: What inference may answer while loads and unloads of its model run (docs/versions.md).
WHILE_UNLOADED = {
    "503 model 'm' is not ready (version 1: UNLOADING)",
    "503 model 'm' is not ready (version 1: UNAVAILABLE unloaded)",
}


async def test_concurrent_load_and_unload_callers_leave_the_server_live_and_ready(
    tmp_path: Path,
) -> None:
    _, server = served(tmp_path)
    stop = asyncio.Event()
    unhealthy: list[str] = []
    polls = 0
    answers: collections.Counter[str] = collections.Counter()

    async def watch_health(http: httpx.AsyncClient) -> None:
        nonlocal polls
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while not stop.is_set():
                for path in ("/healthz", "/ready", "/v2/health/live", "/v2/health/ready"):
                    response = await http.get(path)
                    if response.status_code != 200:
                        unhealthy.append(f"{path}: {response.status_code} {response.text}")
                if not (await stub.ServerReady(pb.ServerReadyRequest())).ready:
                    unhealthy.append("gRPC ServerReady: not ready")
                polls += 1

    async def infer(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            response = await http.post("/v2/models/m/infer", json=BODY)
            answer = response.json()
            answers[
                f"{response.status_code} {answer.get('error', answer.get('model_version'))}"
            ] += 1

    async def caller(http: httpx.AsyncClient, number: int) -> list[str]:
        done = []
        for call in range(CALLS):
            action = ("load", "unload")[(number + call) % 2]
            response = await http.post(f"/v2/repository/models/m/{action}", headers=ADMIN)
            done.append(f"{action}: {response.status_code} {response.text}")
        return done

    limits = httpx.Limits(max_connections=CALLERS + 8)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT_S, limits=limits) as http:
            watchers = [asyncio.create_task(watch_health(http)), asyncio.create_task(infer(http))]
            results = await asyncio.gather(*(caller(http, n) for n in range(CALLERS)))
            stop.set()
            await asyncio.gather(*watchers)
            # The calls ran one at a time; a last load serves the model again.
            assert (
                await http.post("/v2/repository/models/m/load", headers=ADMIN)
            ).status_code == 200
            assert (await http.post("/v2/models/m/infer", json=BODY)).json()["model_version"] == "1"
        assert [r.split(":")[1] for calls in results for r in calls] == [
            " 200 {}"
        ] * CALLERS * CALLS
        assert unhealthy == []
        assert polls > 0
        assert set(answers) <= {"200 1"} | WHILE_UNLOADED, answers
    finally:
        server.stop()


def publish(model: Path, version: str) -> None:
    """Write a version folder beside the repository, then move it in (one rename)."""
    staging = model.parent.parent / "staging"
    add_version(staging, version)
    (staging / version).rename(model / version)


def test_a_polling_server_loads_new_versions_and_unloads_removed_models(tmp_path: Path) -> None:
    model, server = served(tmp_path, "--poll-interval-s", "0.1")

    def answer() -> str:
        response = httpx.post(f"{server.url}/v2/models/m/infer", json=BODY)
        body = response.json()
        return f"{response.status_code} {body.get('model_version', body.get('error'))}"

    try:
        assert answer() == "200 1"
        publish(model, "2")
        wait_until(lambda: answer() == "200 2", WAIT_S, "the poller to serve version 2")
        shutil.rmtree(model)
        wait_until(lambda: answer().startswith("503 "), WAIT_S, "the poller to unload m")
        assert answer() == "503 model 'm' is not ready (version 2: UNAVAILABLE unloaded)"
        assert httpx.get(f"{server.url}/ready").status_code == 200
    finally:
        assert server.stop() == 0  # the poller stopped with the drain

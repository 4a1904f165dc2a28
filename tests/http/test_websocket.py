"""WebSocket streams over real sockets with the ``websockets`` client, plus the in-process
frame-size check (a real server's uvicorn refuses oversized frames before the app)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from inferd.core.node import build_node
from inferd.example import TINY, mlp_reference, mlp_weights
from inferd.http.app import create_app
from tests.conftest import ServerProcess, free_port, make_settings, until
from tests.streaming import busy_max, steps

WEIGHTS = mlp_weights(TINY, seed=0)
ROW = [0.5, -1.0, 2.0, 0.25]


def expected(rows: list[list[float]]) -> np.ndarray[Any, Any]:
    return mlp_reference(WEIGHTS, np.array(rows, dtype=np.float32))


def ws_url(server: ServerProcess, path: str = "/predict/stream") -> str:
    return server.url.replace("http://", "ws://") + path


async def answer(ws: ClientConnection) -> dict[str, Any]:
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return reply


async def answers_until_closed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int | None]:
    """Every answer left on the stream, then the close code the server sent."""
    received = []
    try:
        while True:
            received.append(await answer(ws))
    except ConnectionClosed as closed:
        return received, closed.rcvd.code if closed.rcvd else None


# -- the default server ---------------------------------------------------------------------


async def test_simple_message_round_trip(live_server: ServerProcess) -> None:
    async with connect(ws_url(live_server)) as ws:
        await ws.send(json.dumps({"inputs": ROW, "id": "r1"}))
        reply = await answer(ws)
    assert reply["id"] == "r1"
    assert reply["seq"] == 1
    assert reply["model_version"] == "1"
    assert reply["latency_ms"] >= 0
    np.testing.assert_allclose(reply["predictions"], expected([ROW])[0], rtol=1e-5, atol=1e-5)


async def test_batch_message_in_a_binary_frame(live_server: ServerProcess) -> None:
    rows = [ROW, [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]
    async with connect(ws_url(live_server)) as ws:
        await ws.send(json.dumps({"batch": rows, "model": "tiny"}).encode())
        reply = await answer(ws)
    assert "id" not in reply
    assert reply["seq"] == 1
    np.testing.assert_allclose(reply["predictions"], expected(rows), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/v2/models/tiny/stream", {}),
        ("/v2/models/tiny/versions/1/stream", {}),
        ("/predict/stream", {"model_name": "tiny", "model_version": "1"}),
    ],
)
async def test_v2_message(live_server: ServerProcess, path: str, target: dict[str, str]) -> None:
    message = {
        "id": "v2-1",
        "inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": ROW + ROW}],
        "outputs": [{"name": "output"}],
        **target,
    }
    async with connect(ws_url(live_server, path)) as ws:
        await ws.send(json.dumps(message))
        reply = await answer(ws)
    assert reply["id"] == "v2-1"
    assert reply["seq"] == 1
    assert reply["model_name"] == "tiny"
    assert reply["model_version"] == "1"
    [output] = reply["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", "FP32", [2, 2])
    np.testing.assert_allclose(
        output["data"], expected([ROW, ROW]).reshape(-1), rtol=1e-5, atol=1e-5
    )


async def test_hundred_messages_answered_in_order(live_server: ServerProcess) -> None:
    rows = [[float(i), -float(i), i / 10, 1.0] for i in range(100)]
    async with connect(ws_url(live_server)) as ws:
        for i, row in enumerate(rows):
            await ws.send(json.dumps({"inputs": row, "id": f"m{i}"}))
        replies = [await answer(ws) for _ in rows]
    assert [r["id"] for r in replies] == [f"m{i}" for i in range(100)]
    assert [r["seq"] for r in replies] == list(range(1, 101))
    got = np.array([r["predictions"] for r in replies])
    np.testing.assert_allclose(got, expected(rows), rtol=1e-5, atol=1e-5)


async def test_bad_messages_get_errors_and_the_stream_goes_on(live_server: ServerProcess) -> None:
    messages: list[tuple[object, int | None]] = [
        ({"inputs": ROW, "id": "good-1"}, None),
        ({"inputs": [1.0, 2.0, 3.0], "id": "short"}, 400),
        ({"inputs": ROW, "model": "nope", "id": "unknown-model"}, 404),
        ({"inputs": ROW, "model_version": "9", "id": "unknown-version"}, 404),
        ({"inputs": ROW, "colour": "red", "id": "unknown-field"}, 400),
        ({"inputs": ROW, "id": 7}, 400),
        ([1, 2, 3], 400),
        ({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32"}], "id": "v2"}, 400),
        ({"inputs": ROW, "id": "good-2"}, None),
    ]
    async with connect(ws_url(live_server)) as ws:
        for message, _ in messages:
            await ws.send(json.dumps(message))
        replies = [await answer(ws) for _ in messages]
    assert [r["seq"] for r in replies] == list(range(1, len(messages) + 1))
    for (message, code), reply in zip(messages, replies, strict=True):
        if isinstance(message, dict) and isinstance(message.get("id"), str):
            assert reply["id"] == message["id"]
        else:
            assert "id" not in reply
        if code is None:
            assert "error" not in reply
            np.testing.assert_allclose(reply["predictions"], expected([ROW])[0], rtol=1e-5)
        else:
            assert reply["code"] == code, reply
            assert reply["error"]


async def test_malformed_json(live_server: ServerProcess) -> None:
    headers = {"X-Request-Id": "ws-malformed"}
    async with connect(ws_url(live_server), additional_headers=headers) as ws:
        await ws.send('{"inputs": [1, 2,')
        await ws.send(b"\xff\xfe not json")
        await ws.send(json.dumps({"inputs": ROW}))
        first, second, third = [await answer(ws) for _ in range(3)]
    # Errors are rendered by the transport's one table and carry the stream's request id.
    assert first == {"error": first["error"], "code": 400, "seq": 1, "request_id": "ws-malformed"}
    assert "malformed JSON" in first["error"]
    assert (second["code"], second["seq"]) == (400, 2)
    assert third["seq"] == 3
    assert "predictions" in third


async def test_stream_on_v2_path_refuses_another_model(live_server: ServerProcess) -> None:
    async with connect(ws_url(live_server, "/v2/models/tiny/stream")) as ws:
        await ws.send(json.dumps({"inputs": ROW, "model": "wide", "id": "x"}))
        reply = await answer(ws)
    assert (reply["code"], reply["id"]) == (400, "x")
    assert "'tiny'" in reply["error"]


# -- limits ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_server(example_repo: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        example_repo,
        "--default-model",
        "tiny",
        env={
            "INFERENCE_STREAM__IDLE_TIMEOUT_S": "0.5",
            "INFERENCE_STREAM__MAX_MESSAGES_PER_SECOND": "5",
            "INFERENCE_SAFEGUARDS__MAX_REQUEST_SIZE_MB": "0.001",
        },
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


async def test_idle_stream_closes_with_1000(strict_server: ServerProcess) -> None:
    async with connect(ws_url(strict_server)) as ws:
        await ws.send(json.dumps({"inputs": ROW}))
        started = time.monotonic()
        replies, code = await answers_until_closed(ws)
        idle_for = time.monotonic() - started
    assert [r["seq"] for r in replies] == [1]
    assert code == 1000
    assert ws.close_reason == "idle timeout"
    assert idle_for >= 0.4


async def test_message_rate_abuse_closes_with_1008(strict_server: ServerProcess) -> None:
    async with connect(ws_url(strict_server)) as ws:
        for i in range(40):
            await ws.send(json.dumps({"inputs": ROW, "id": str(i)}))
        replies, code = await answers_until_closed(ws)
    assert code == 1008
    # The burst is a second's worth; every message read before the limit is answered.
    assert 5 <= len(replies) < 40
    assert [r["seq"] for r in replies] == list(range(1, len(replies) + 1))
    assert all("predictions" in r for r in replies)


async def test_oversized_frame_closes_with_1009(strict_server: ServerProcess) -> None:
    async with connect(ws_url(strict_server), max_size=None) as ws:
        await ws.send(json.dumps({"inputs": ROW}))
        assert "predictions" in await answer(ws)
        await ws.send(json.dumps({"inputs": [0.0] * 1000}))
        _, code = await answers_until_closed(ws)
    assert code == 1009


async def test_oversized_frame_checked_by_the_app(example_repo: Path) -> None:
    """Behind a server with no frame limit of its own the app still refuses, after answering
    what it read."""
    settings = make_settings(
        example_repo, models={"default_model": "tiny"}, safeguards={"max_request_size_mb": 0.001}
    )
    port = free_port()
    node = build_node(settings)
    await node.start()
    config = uvicorn.Config(create_app(node), port=port, ws_max_size=2**24, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    try:
        await until(started, 10, what="the in-process server to start")
        async with connect(f"ws://127.0.0.1:{port}/predict/stream") as ws:
            await ws.send(json.dumps({"inputs": ROW, "id": "small"}))
            await ws.send(json.dumps({"inputs": [0.0] * 1000}))
            replies, code = await answers_until_closed(ws)
    finally:
        server.should_exit = True
        await serving
        await node.stop()
    assert [r["id"] for r in replies] == ["small"]
    assert code == 1009


# -- shutdown -------------------------------------------------------------------------------

GATED_MODEL = """
import time
from pathlib import Path


class Model:
    def predict(self, inputs):
        gate = Path(__file__).parent.parent / "release"
        deadline = time.monotonic() + 30
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"output": inputs["input"] * 2}
"""


def gated_repository(root: Path) -> Path:
    """A model that answers only once ``gated/release`` exists."""
    model = root / "gated"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(GATED_MODEL)
    (model / "model.yaml").write_text(
        "runtime: python\nwarmup: false\n"
        "inputs: [{name: input, datatype: FP32, shape: [-1, 4]}]\n"
        "outputs: [{name: output, datatype: FP32, shape: [-1, 4]}]\n"
    )
    return model / "release"


async def metric(server: ServerProcess, name: str, *labels: str) -> float:
    """The sum of a metric's samples whose line holds every one of ``labels``."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{server.url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and all(label in line for label in labels)
    )


async def test_shutdown_sends_in_flight_answers_then_1001(tmp_path: Path) -> None:
    release = gated_repository(tmp_path)
    server = ServerProcess(tmp_path, "--default-model", "gated")
    try:
        server.wait_ready()
        async with connect(ws_url(server)) as ws, httpx.AsyncClient() as http:
            await ws.send(json.dumps({"inputs": [1, 2, 3, 4], "id": "a"}))
            await ws.send(json.dumps({"inputs": [5, 6, 7, 8], "id": "b"}))

            async def both_in_flight() -> bool:
                return await metric(server, "inferd_in_flight_requests") == 2

            await until(both_in_flight, 10, what="both messages in flight")
            server.process.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                return (await http.get(f"{server.url}/ready")).status_code == 503

            await until(draining, 10, what="the server to start draining")
            # While draining, the stream stays open and new work is refused with 503.
            await ws.send(json.dumps({"inputs": [1, 1, 1, 1], "id": "c"}))

            async def refused() -> bool:
                labels = ('protocol="websocket"', 'status="unavailable"')
                return await metric(server, "inferd_requests_total", *labels) == 1

            await until(refused, 10, what="the message sent while draining to be refused")
            release.touch()
            replies, code = await answers_until_closed(ws)
        assert [(r["id"], r["seq"]) for r in replies] == [("a", 1), ("b", 2), ("c", 3)]
        assert replies[0]["predictions"] == [2.0, 4.0, 6.0, 8.0]
        assert replies[1]["predictions"] == [10.0, 12.0, 14.0, 16.0]
        assert replies[2]["code"] == 503
        assert code == 1001
        assert ws.close_reason == "server shutting down"
        assert server.process.wait(30) == 0
    finally:
        release.touch()
        server.stop()


# -- streaming models -----------------------------------------------------------------------


def count_message(tag: str, n: int, delay_ms: int = 0, **fields: Any) -> str:
    tensors = [("n", "INT32", [n]), ("delay_ms", "INT32", [delay_ms]), ("tag", "BYTES", [tag])]
    return json.dumps(
        {
            "model_name": "count",
            "inputs": [
                {"name": name, "datatype": datatype, "shape": [1], "data": data}
                for name, datatype, data in tensors
            ],
            **fields,
        }
    )


async def test_a_streaming_model_answers_each_partial_then_a_final_marker(
    stream_server: ServerProcess,
) -> None:
    async with connect(ws_url(stream_server)) as ws:
        await ws.send(count_message("ws-partials", 3, id="a"))
        await ws.send(json.dumps({"inputs": ROW, "id": "b"}))
        replies = [await answer(ws) for _ in range(5)]
    partials = replies[:3]
    assert [r["outputs"][0]["data"] for r in partials] == [[0], [1], [2]]
    assert {(r["id"], r["seq"], r["final"], r["model_name"]) for r in partials} == {
        ("a", 1, False, "count")
    }
    assert replies[3] == {
        "id": "a",
        "seq": 1,
        "model_name": "count",
        "model_version": "1",
        "final": True,
    }
    assert (replies[4]["id"], replies[4]["seq"], "final" in replies[4]) == ("b", 2, False)


async def test_a_streaming_model_failing_answers_an_error_after_its_partials(
    stream_server: ServerProcess,
) -> None:
    async with connect(ws_url(stream_server)) as ws:
        await ws.send(count_message("ws-fails", -2))
        replies = [await answer(ws) for _ in range(3)]
    assert [r["outputs"][0]["data"] for r in replies[:2]] == [[0], [1]]
    assert (replies[2]["code"], replies[2]["seq"]) == (500, 1)
    assert replies[2]["error"].startswith("internal error (request id ")


async def test_a_client_that_disconnects_stops_the_generator(
    stream_server: ServerProcess, stream_repo: Path
) -> None:
    async with connect(ws_url(stream_server)) as ws:
        await ws.send(count_message("ws-gone", 1000, 10))
        assert [(await answer(ws))["outputs"][0]["data"] for _ in range(3)] == [[0], [1], [2]]

    async def closed() -> bool:
        return "closed" in steps(stream_repo, "ws-gone")

    await until(closed, 10, what="the generator to close")
    assert len(steps(stream_repo, "ws-gone")) < 100


async def test_at_most_max_in_flight_messages_run_at_once(stream_repo: Path) -> None:
    server = ServerProcess(
        stream_repo, "--default-model", "busy", env={"INFERENCE_STREAM__MAX_IN_FLIGHT": "3"}
    )
    try:
        server.wait_ready()
        async with connect(ws_url(server)) as ws:
            for n in range(10):
                await ws.send(json.dumps({"inputs": [n]}))
            replies = [await answer(ws) for _ in range(10)]
        assert [r["predictions"] for r in replies] == [[float(n)] for n in range(10)]
        assert busy_max(stream_repo) == 3
    finally:
        server.stop()


async def test_shared_memory_is_refused_on_a_stream(live_server: ServerProcess) -> None:
    message = {
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ROW}],
        "outputs": [
            {
                "name": "output",
                "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 8},
            }
        ],
    }
    async with connect(ws_url(live_server, "/v2/models/tiny/stream")) as ws:
        await ws.send(json.dumps(message))
        reply = await answer(ws)
    assert reply["code"] == 400
    assert "not available on a WebSocket stream" in reply["error"]

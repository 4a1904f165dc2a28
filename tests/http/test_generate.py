"""Triton's generate extension over real sockets: /generate (JSON) and /generate_stream
(Server-Sent Events) against a real server with streaming models."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, wait_until
from tests.streaming import steps


def count_body(tag: str, n: int, delay_ms: int = 0, **parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"n": n, "delay_ms": delay_ms, "tag": tag}
    if parameters:
        body["parameters"] = parameters
    return body


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The ``data:`` events of an SSE response, parsed, as they arrive."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            event: dict[str, Any] = json.loads(line[len("data: ") :])
            yield event


@pytest.mark.parametrize("model", ["count", "acount"])
def test_generate_stream_sends_each_partial_as_an_event(
    stream_server: ServerProcess, model: str
) -> None:
    url = f"{stream_server.url}/v2/models/{model}/generate_stream"
    with httpx.stream("POST", url, json=count_body(f"sse-{model}", 4), timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        received = list(events(response))
    assert received == [{"model_name": model, "model_version": "1", "i": i} for i in range(4)]


def test_the_first_event_arrives_before_the_generator_finishes(
    stream_server: ServerProcess,
) -> None:
    url = f"{stream_server.url}/v2/models/count/generate_stream"
    started = time.monotonic()
    with httpx.stream("POST", url, json=count_body("first-event", 10, 100), timeout=10) as response:
        arrivals = [time.monotonic() - started for _ in events(response)]
    total = time.monotonic() - started
    assert len(arrivals) == 10
    # Ten steps of 100 ms: the first event comes after about one step, not after all ten.
    assert total >= 1.0
    assert arrivals[0] < total / 2


def test_a_client_that_disconnects_stops_the_generator(
    stream_server: ServerProcess, stream_repo: Path
) -> None:
    url = f"{stream_server.url}/v2/models/count/generate_stream"
    with httpx.stream("POST", url, json=count_body("sse-gone", 1000, 10), timeout=10) as response:
        received = events(response)
        assert [next(received)["i"] for _ in range(3)] == [0, 1, 2]
    wait_until(lambda: "closed" in steps(stream_repo, "sse-gone"), 10, "the generator to close")
    ran = len(steps(stream_repo, "sse-gone")) - 1
    assert 3 <= ran < 100


def test_the_deadline_ends_the_stream_with_an_error_event(stream_server: ServerProcess) -> None:
    url = f"{stream_server.url}/v2/models/count/generate_stream"
    body = count_body("sse-deadline", 1000, 20, timeout=300_000)
    headers = {"X-Request-Id": "sse-deadline-1"}
    with httpx.stream("POST", url, json=body, timeout=10, headers=headers) as response:
        received = list(events(response))
    assert received[-1] == {
        "error": "the request's deadline passed while it was streaming",
        "request_id": "sse-deadline-1",  # a stream's error carries its request id
    }
    assert 0 < len(received) - 1 < 1000


def test_a_failure_after_partials_ends_the_stream_with_an_error_event(
    stream_server: ServerProcess,
) -> None:
    url = f"{stream_server.url}/v2/models/count/generate_stream"
    with httpx.stream("POST", url, json=count_body("sse-fails", -2), timeout=10) as response:
        received = list(events(response))
    assert [e.get("i") for e in received[:2]] == [0, 1]
    assert received[2]["error"].startswith("internal error (request id ")


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("busy/generate_stream", {"x": 1.0}, "model 'busy' does not stream its outputs"),
        ("count/generate", count_body("refused", 1), "model 'count' streams its outputs"),
        ("count/generate_stream", {"n": 1, "delay_ms": 0}, "missing inputs ['tag']"),
        ("count/generate_stream", {**count_body("x", 1), "nope": 1}, "unknown field(s) ['nope']"),
        ("count/generate_stream", [1, 2], "a generate request is a JSON object"),
        ("count/generate_stream", {**count_body("x", 1), "parameters": []}, "'parameters' must"),
    ],
)
def test_requests_that_cannot_be_served_get_400_before_any_event(
    stream_server: ServerProcess, path: str, body: Any, message: str
) -> None:
    response = httpx.post(f"{stream_server.url}/v2/models/{path}", json=body, timeout=10)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


def test_generate_answers_once_with_outputs_by_name(stream_server: ServerProcess) -> None:
    response = httpx.post(
        f"{stream_server.url}/v2/models/tiny/versions/1/generate",
        json={"input": [0.5, -1.0, 2.0, 0.25]},
        timeout=10,
    )
    assert response.status_code == 200
    doc = response.json()
    assert (doc["model_name"], doc["model_version"]) == ("tiny", "1")
    assert len(doc["output"]) == 1 and len(doc["output"][0]) == 2  # shape [1, 2]


def test_generate_stream_of_an_unknown_model_is_404(stream_server: ServerProcess) -> None:
    response = httpx.post(
        f"{stream_server.url}/v2/models/nope/generate_stream", json={"x": 1}, timeout=10
    )
    assert response.status_code == 404


def test_server_metadata_lists_the_generate_extension(stream_server: ServerProcess) -> None:
    assert "generate" in httpx.get(f"{stream_server.url}/v2", timeout=10).json()["extensions"]


def test_a_slow_reader_holds_the_generator_back(
    stream_server: ServerProcess, stream_repo: Path
) -> None:
    """Partials of 64 KiB to a client that stops reading: once the socket buffers are full
    the generator waits, far short of its 10,000 steps (640 MB)."""
    url = f"{stream_server.url}/v2/models/chunks/generate_stream"
    with httpx.stream("POST", url, json={"tag": "sse-slow"}, timeout=30) as response:
        received = events(response)  # kept: closing it would close the connection
        assert len(next(received)["chunk"]) == 65536
        wait_until(lambda: len(steps(stream_repo, "sse-slow")) > 10, 10, "some steps")
        time.sleep(1.0)  # time in which an unbounded producer would run on to the end
        held = steps(stream_repo, "sse-slow")
        assert "closed" not in held
        assert len(held) < 2000
    wait_until(lambda: "closed" in steps(stream_repo, "sse-slow"), 10, "the generator to close")

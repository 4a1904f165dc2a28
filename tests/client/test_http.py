"""inferd.client over HTTP against a real server: every datatype both ways, sync and
async, the retry on 429, deadlines, keys, request ids, X-Cache and the two HTTP streams."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import importlib.util
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from inferd.client import NO_RETRY, AsyncClient, Client, InferResult
from inferd.errors import DeadlineExceeded, InvalidArgument, NotFound, ResourceExhausted
from tests.client.conftest import DATATYPES, gate, identity_inputs
from tests.conftest import ServerProcess, wait_until

Arrays = dict[str, np.ndarray[Any, Any]]


def in_process(repo: Path, inputs: Arrays) -> Arrays:
    """The identity model's own answer, its model.py run here."""
    spec = importlib.util.spec_from_file_location("identity_model", repo / "identity/1/model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    answer: Arrays = module.Model().predict(dict(inputs))
    return answer


def assert_same(result: InferResult, expected: Arrays) -> None:
    assert sorted(result.outputs) == sorted(expected)
    for name, want in expected.items():
        got = result[name]
        dt = name.removeprefix("out_")
        assert got.dtype == np.dtype(DATATYPES[dt]), name
        assert got.shape == want.shape, name
        assert got.tolist() == want.tolist(), name


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_round_trips(
    client_server: ServerProcess, client_repo: Path, binary: bool
) -> None:
    inputs = identity_inputs()
    datatypes = {"in_BF16": "BF16"}
    with Client(client_server.url, binary=binary) as client:
        result = client.infer("identity", inputs, datatypes=datatypes)
    assert (result.model, result.version, result.final) == ("identity", "1", True)
    assert_same(result, in_process(client_repo, inputs))


async def test_every_datatype_round_trips_async(
    client_server: ServerProcess, client_repo: Path
) -> None:
    inputs = identity_inputs()
    async with AsyncClient(client_server.url) as client:
        results = await asyncio.gather(
            client.infer("identity", inputs, datatypes={"in_BF16": "BF16"}),
            client.infer("identity", inputs, datatypes={"in_BF16": "BF16"}, binary=False),
        )
    for result in results:
        assert_same(result, in_process(client_repo, inputs))


def test_requested_outputs_version_and_request_id(client_server: ServerProcess) -> None:
    inputs = identity_inputs()
    with Client(client_server.url) as client:
        result = client.infer(
            "identity",
            inputs,
            version="1",
            outputs=["out_INT8"],
            datatypes={"in_BF16": "BF16"},
            request_id="req-42",
        )
    assert list(result.outputs) == ["out_INT8"]
    assert result.request_id == "req-42"
    np.testing.assert_array_equal(result["out_INT8"], inputs["in_INT8"])


def test_x_cache_is_read_back(client_server: ServerProcess) -> None:
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    with Client(client_server.url) as client:
        first = client.infer("cached", {"in_x": x})
        second = client.infer("cached", {"in_x": x})
    assert (first.cache, second.cache) == ("miss", "hit")
    np.testing.assert_array_equal(second["out_x"], x)


def test_refusals_raise_the_error_tree(client_server: ServerProcess) -> None:
    with Client(client_server.url) as client:
        with pytest.raises(NotFound, match="HTTP 404: model 'nope'") as missing:
            client.infer("nope", {"x": np.ones(1, np.float32)})
        assert missing.value.request_id
        with pytest.raises(InvalidArgument, match="HTTP 400"):
            client.infer("slow", {"x": np.ones(2, np.float32)})
        with pytest.raises(InvalidArgument, match="version or a label"):
            client.infer("slow", {"x": np.ones(1, np.float32)}, version="1", label="stable")


def metric(url: str, prefix: str) -> float:
    """The sum of the /metrics samples whose line starts with ``prefix``."""
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))


QUEUE_FULL = 'inferd_rejections_total{reason="queue_full_or_rate_limited"}'
IN_FLIGHT = "inferd_in_flight_requests "
GATED_QUEUE = 'inferd_queue_depth{model="gated",version="1"}'


def fill_queue(url: str, repo: Path, pool: concurrent.futures.ThreadPoolExecutor) -> list[Any]:
    """Close ``gated``'s gate and send it two requests: one runs (until the gate opens),
    one waits in its queue of one; returns once the second is queued, so that the next
    request is refused with 429 until :func:`open_gate`."""
    gate(repo).unlink(missing_ok=True)
    post = functools.partial(httpx.post, f"{url}/v2/models/gated/infer", json=BODY, timeout=30)
    calls = [pool.submit(post)]
    wait_until(lambda: metric(url, IN_FLIGHT) >= 1, what="a request running")
    calls.append(pool.submit(post))
    wait_until(lambda: metric(url, GATED_QUEUE) >= 1, what="a full queue")
    return calls


def open_gate(repo: Path, blockers: list[Any]) -> None:
    gate(repo).touch()
    assert all(b.result().status_code == 200 for b in blockers)


BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1.0]}]}


def test_a_429_with_retry_after_is_retried_and_succeeds(
    client_server: ServerProcess, client_repo: Path
) -> None:
    url, x = client_server.url, {"x": np.ones(1, np.float32)}
    with (
        concurrent.futures.ThreadPoolExecutor(3) as pool,
        Client(url) as client,
        Client(url, retry=NO_RETRY) as no_retry,
    ):
        blockers = fill_queue(url, client_repo, pool)
        with pytest.raises(ResourceExhausted, match="HTTP 429") as refused:
            no_retry.infer("gated", x)
        assert refused.value.retry_after_s == 1
        open_gate(client_repo, blockers)

        blockers = fill_queue(url, client_repo, pool)
        before = metric(url, QUEUE_FULL)
        started = time.monotonic()
        call = pool.submit(client.infer, "gated", x)
        wait_until(lambda: metric(url, QUEUE_FULL) == before + 1, what="the 429")
        open_gate(client_repo, blockers)  # the queue drains before the Retry-After second
        result = call.result()
        waited = time.monotonic() - started
    assert result["y"].tolist() == [1.0]
    assert metric(url, QUEUE_FULL) == before + 1  # refused once, then answered
    assert waited >= 1.0


def test_a_deadline_is_honoured(client_server: ServerProcess) -> None:
    with Client(client_server.url) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            client.infer("slow", {"x": np.ones(1, np.float32)}, timeout_s=0.1)
        assert time.monotonic() - started < 0.59  # before the model's 0.6 s would end


def test_server_sent_events_iterate_partials(client_server: ServerProcess) -> None:
    with Client(client_server.url) as client:
        events = list(client.generate_stream("words", {"text_input": "one two three"}))
    assert [e["text_output"] for e in events] == ["one", "two", "three"]


def test_websocket_stream_iterates_partials(client_server: ServerProcess) -> None:
    with Client(client_server.url) as client:
        parts = list(client.stream("words", {"text_input": np.array(["one two three"])}))
    assert [p["text_output"].tolist() for p in parts] == [[b"one"], [b"two"], [b"three"]]
    assert not any(p.final for p in parts)


async def test_async_streams_iterate_partials(client_server: ServerProcess) -> None:
    async with AsyncClient(client_server.url) as client:
        events = [e async for e in client.generate_stream("words", {"text_input": "a b"})]
        parts = [p async for p in client.stream("words", {"text_input": np.array(["a b"])})]
    assert [e["text_output"] for e in events] == ["a", "b"]
    assert [p["text_output"].tolist() for p in parts] == [[b"a"], [b"b"]]


def test_health_and_metadata(client_server: ServerProcess) -> None:
    with Client(client_server.url) as client:
        assert client.live() and client.ready()
        assert client.model_ready("identity") and client.model_ready("slow", "1")
        with pytest.raises(NotFound):
            client.model_ready("slow", "9")
        assert client.server_metadata()["name"] == "inferd"
        assert client.model_metadata("slow")["inputs"][0]["name"] == "x"


def test_labels_versions_and_routing_keys(client_server: ServerProcess) -> None:
    x = {"x": np.zeros(1, np.float32)}
    with Client(client_server.url) as client:
        assert client.infer("split", x, label="canary").version == "2"
        assert client.infer("split", x, version="1")["y"].tolist() == [1.0]
        sticky = {client.infer("split", x, routing_key="user-7").version for _ in range(8)}
        spread = {client.infer("split", x, routing_key=f"user-{i}").version for i in range(32)}
    assert len(sticky) == 1  # one key, one version
    assert spread == {"1", "2"}  # the split, by key

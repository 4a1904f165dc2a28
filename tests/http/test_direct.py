"""Small inference requests answered from the connection (http/direct.py), on a real socket:
the same answers as the ASGI path, keep-alive, HTTP/1.0, pipelining, drain, and what takes
the ASGI path instead."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from inferd.gateway.keys import Scope, new_key
from inferd.http import direct
from inferd.http.app import create_app
from inferd.http.front import Front
from inferd.settings import HttpLimits
from tests.conftest import NodeFactory, until
from tests.http import loopback
from tests.test_cost import KeptTransport, served_connection

KEY, RECORD = new_key("app", Scope.INFER)
V2 = orjson.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
)
INFER = b"/v2/models/tiny/infer"


class Served:
    def __init__(self, port: int, draining: list[bool], started: list[int]) -> None:
        self.port = port
        self.draining = draining
        #: How many requests took the direct path.
        self.started = started

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@pytest.fixture
def count_direct(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    started = [0]
    start = direct.start

    def counted(*args: Any) -> None:
        started[0] += 1
        start(*args)

    monkeypatch.setattr(direct, "start", counted)
    yield started


@pytest.fixture
def serving(example_repo: Path, node_factory: NodeFactory, count_direct: list[int]) -> Any:
    @contextlib.asynccontextmanager
    async def serve(
        limits: HttpLimits | None = None, **sections: dict[str, Any]
    ) -> AsyncIterator[Served]:
        node = node_factory(example_repo, models={"default_model": "tiny"}, **sections)
        await node.start()
        draining = [False]
        async with loopback.serve(
            create_app(node),
            limits or HttpLimits(),
            lambda: draining[0],
            server_header=False,
            proxy_headers=False,  # as inferd.server: the app itself, not wrapped
        ) as port:
            yield Served(port, draining, count_direct)

    return serve


def request(
    path: bytes, body: bytes, *headers: bytes, chunked: bool = False, version: bytes = b"1.1"
) -> bytes:
    head = [b"POST " + path + b" HTTP/" + version, b"Host: x", *headers]
    if chunked:  # takes uvicorn's ASGI path
        head.append(b"Transfer-Encoding: chunked")
        return b"\r\n".join([*head, b"", b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"])
    head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join([*head, b"", body])


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Status line, headers (without ``date``) and body of one answer (after any
    ``100 Continue``)."""
    head = b"HTTP/1.1 100"
    while head.startswith(b"HTTP/1.1 100"):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, *lines = head[:-4].split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    headers.pop(b"date", None)
    body = await reader.readexactly(int(headers[b"content-length"]))
    return status, headers, body


async def ask(served: Served, data: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    reader, writer = await served.connect()
    try:
        writer.write(data)
        return await read_answer(reader)
    finally:
        writer.close()


def comparable(answer: tuple[bytes, dict[bytes, bytes], bytes]) -> Any:
    """An answer without what differs between two requests: ``/predict``'s ``latency_ms``
    (and so the body's length, read exactly by :func:`read_answer`)."""
    status, headers, body = answer
    doc = orjson.loads(body)
    doc.pop("latency_ms", None)
    return status, {k: v for k, v in headers.items() if k != b"content-length"}, doc


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (INFER, V2, 200),
        (b"/predict", b'{"inputs": [1, 2, 3, 4]}', 200),
        (b"/v2/models/tiny/versions/1/infer", V2, 200),
        (INFER, b'{"inputs": [', 400),  # not JSON
        (INFER, b'{"inputs": []}', 400),
        (b"/v2/models/missing/infer", V2, 404),
        (INFER, V2.replace(b"FP32", b"INT8"), 400),
    ],
)
async def test_a_direct_answer_is_the_asgi_paths_answer(
    serving: Any, path: bytes, body: bytes, status: int
) -> None:
    async with serving() as served:
        rid = b"X-Request-Id: req-1"
        quick = await ask(served, request(path, body, rid))
        assert served.started[0] == 1
        slow = await ask(served, request(path, body, rid, chunked=True))
        assert served.started[0] == 1
    assert int(quick[0].split()[1]) == status
    assert comparable(quick) == comparable(slow)
    assert quick[1][b"x-request-id"] == b"req-1"


async def test_a_refusal_by_admission_is_the_same_on_both_paths(serving: Any) -> None:
    keys = {"api_keys": [RECORD.line()], "require_api_key": True}
    async with serving(server=keys) as served:
        rid = b"X-Request-Id: req-2"
        quick = await ask(served, request(INFER, V2, rid))
        slow = await ask(served, request(INFER, V2, rid, chunked=True))
        keyed = await ask(served, request(INFER, V2, b"Authorization: Bearer " + KEY.encode()))
        assert served.started[0] == 2
    assert quick == slow
    assert quick[0] == b"HTTP/1.1 401 Unauthorized"
    assert quick[1][b"www-authenticate"] == b"Bearer"
    assert keyed[0] == b"HTTP/1.1 200 OK"


async def test_a_body_past_the_size_limit_is_the_same_refusal_on_both_paths(
    serving: Any,
) -> None:
    async with serving(safeguards={"max_request_size_mb": 64 / 2**20}) as served:  # 64 bytes
        rid = b"X-Request-Id: req-3"
        quick = await ask(served, request(INFER, V2, rid))
        # The ASGI path with the same declared length: Expect keeps it off the direct one.
        slow = await ask(served, request(INFER, V2, rid, b"Expect: 100-continue"))
        assert served.started[0] == 1
    assert quick[0] == b"HTTP/1.1 413 Request Entity Too Large"
    assert quick == slow


async def test_a_body_that_stops_coming_is_408(serving: Any) -> None:
    async with serving(HttpLimits(body_timeout_s=0.2)) as served:
        reader, writer = await served.connect()
        writer.write(request(INFER, V2)[:-10])  # the head and most of the body
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert served.started[0] == 0
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_keep_alive_http_1_0_and_drain(serving: Any) -> None:
    async with serving() as served:
        reader, writer = await served.connect()
        for _ in range(3):
            writer.write(request(INFER, V2))
            status, headers, _ = await read_answer(reader)
            assert status == b"HTTP/1.1 200 OK"
            assert b"connection" not in headers
        writer.close()
        reader, writer = await served.connect()
        writer.write(request(INFER, V2, version=b"1.0"))
        status, headers, _ = await read_answer(reader)
        assert headers[b"connection"] == b"close"
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        writer.close()
        served.draining[0] = True
        _, headers, _ = await ask(served, request(INFER, V2))
        assert headers[b"connection"] == b"close"
        assert served.started[0] == 5


async def test_pipelined_requests_are_answered_in_order(serving: Any) -> None:
    async with serving() as served:
        reader, writer = await served.connect()
        bodies = [V2, b"[", V2.replace(b"[1,2,3,4]", b"[4,3,2,1]")]
        writer.write(b"".join(request(INFER, body) for body in bodies))
        answers = [await read_answer(reader) for _ in bodies]
        writer.close()
    assert [status for status, _, _ in answers] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 400 Bad Request",
        b"HTTP/1.1 200 OK",
    ]
    first, third = (orjson.loads(answers[i][2])["outputs"][0]["data"] for i in (0, 2))
    assert first != third
    assert served.started[0] >= 1  # the first; the ones queued behind it take the ASGI path


async def test_what_takes_the_asgi_path(serving: Any) -> None:
    big = orjson.dumps(
        {
            "inputs": [
                {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
            ],
            "parameters": {"pad": "x" * direct.MAX_BODY},
        }
    )
    async with serving() as served:
        answers = [
            await ask(served, request(INFER, big)),
            await ask(served, request(INFER, V2, b"Expect: 100-continue")),
            await ask(served, request(b"/v2/models/tiny/infer?x=1", V2)),
            await ask(served, request(b"/v2/models/%74iny/infer", V2)),
            await ask(served, request(b"/v2/repository/index", b"{}")),
        ]
        assert served.started[0] == 1  # the query string's: served directly, query ignored
    statuses = [int(status.split()[1]) for status, _, _ in answers]
    assert statuses[1:4] == [200, 200, 200]
    assert statuses[0] == 400  # an unknown parameter, refused on either path


async def test_a_bug_in_the_direct_path_is_a_logged_500_and_a_close(
    serving: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    async with serving() as served:
        monkeypatch.setattr(Front, "direct_answer", broken)
        reader, writer = await served.connect()
        writer.write(request(INFER, V2))
        status, headers, body = await read_answer(reader)
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
        writer.close()
    assert status == b"HTTP/1.1 500 Internal Server Error"
    assert headers[b"connection"] == b"close"
    assert body == b"Internal Server Error"
    assert "unhandled error in a direct answer" in caplog.text


async def test_a_client_gone_before_the_answer_leaves_the_server_well(serving: Any) -> None:
    async with serving() as served:
        _, writer = await served.connect()
        writer.write(request(INFER, V2))
        await writer.drain()
        writer.close()
        status, _, _ = await ask(served, request(INFER, V2))
        assert status == b"HTTP/1.1 200 OK"


async def test_requests_read_in_one_turn_share_a_batch_and_a_lone_one_runs_at_once(
    example_repo: Path, node_factory: NodeFactory
) -> None:
    """The direct path counts the requests it read and has not started answering: one
    that finds none other is alone and, on an idle cheap version, is answered in the loop
    turn its task first runs in; requests read in one turn queue and share a batch."""
    node = node_factory(
        example_repo,
        models={"default_model": "tiny"},
        performance={"inline_max_compute_us": 100_000},
    )
    await node.start()
    app = create_app(node)
    first, second = served_connection(app), served_connection(app)
    stats = node.service.router.resolve("tiny", None, None).stats

    def feed(connection: tuple[Any, KeptTransport], value: int) -> None:
        protocol, transport = connection
        transport.written.clear()
        body = V2.replace(b"[1,2,3,4]", b"[%d,2,3,4]" % value)
        protocol.data_received(request(INFER, body))

    def outputs(connection: tuple[Any, KeptTransport]) -> Any:
        answer = bytes(connection[1].written)
        assert answer.startswith(b"HTTP/1.1 200 OK")
        return orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["outputs"]

    alone: dict[int, Any] = {}
    for value in (6, 7):
        feed(first, value)
        await asyncio.sleep(0)  # the answer's task runs its first step
        alone[value] = outputs(first)  # answered in that step: no queue, no other turn
    assert set(stats.batches) == {1}

    feed(first, 6)
    feed(second, 7)  # read in the same turn: neither is alone
    await asyncio.sleep(0)
    assert not first[1].written and not second[1].written  # queued: dispatched next turn
    await until(lambda: bool(first[1].written and second[1].written), 10, "both answers")
    assert set(stats.batches) == {1, 2}  # the two ran as one call
    for connection, value in ((first, 6), (second, 7)):  # a batch's sums round alike
        assert outputs(connection)[0]["data"] == pytest.approx(alone[value][0]["data"], rel=1e-4)
    assert app.arriving == 0

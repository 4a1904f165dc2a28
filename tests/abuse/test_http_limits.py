"""Request heads, slow clients and connection floods against a real server."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from inferd.example import TINY, mlp_reference, mlp_weights
from tests.abuse.conftest import FIGURES, LIMITS, Requester, assert_probe_fast
from tests.conftest import ServerProcess

MB = 1024 * 1024
X = [[0.5, -1.0, 2.0, 0.25]]
EXPECTED = mlp_reference(mlp_weights(TINY, seed=0), np.array(X, dtype=np.float32))
HEADER_TIMEOUT_S = LIMITS["http"]["header_timeout_s"]
BODY_TIMEOUT_S = LIMITS["http"]["body_timeout_s"]
#: How much later than its limit a slow connection may be seen closed on a busy machine.
CLOSE_SLACK_S = 2.0


def infer(client: httpx.Client) -> None:
    """One real request, answered correctly."""
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": X}]}
    response = client.post("/v2/models/tiny/infer", json=body)
    assert response.status_code == 200, response.text
    got = np.array(response.json()["outputs"][0]["data"], dtype=np.float32).reshape(1, 2)
    np.testing.assert_allclose(got, EXPECTED, rtol=1e-5)


def address(server: ServerProcess) -> tuple[str, int]:
    return ("127.0.0.1", server.http_port)


def read_answer(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def push(server: ServerProcess, first: bytes, chunk: bytes, total: int) -> tuple[bytes, int]:
    """Send ``first``, then ``chunk`` over and over up to ``total`` bytes, stopping as soon
    as the server answers; the answer and the bytes sent."""
    with socket.create_connection(address(server)) as sock:
        sock.sendall(first)
        sent = len(first)
        deadline = time.monotonic() + 30
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while sent < total and time.monotonic() < deadline:
                events = selector.select(1)
                if any(mask & selectors.EVENT_READ for _, mask in events):
                    break
                if events:
                    try:
                        sent += sock.send(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        break
        return read_answer(sock), sent


def status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    return int(answer.split(b" ", 2)[1])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status_file:
        for line in status_file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_64_mb_header_is_refused_early_with_431(
    abuse_server: ServerProcess, probe: Requester
) -> None:
    first = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    answer, sent = push(abuse_server, first, b"a" * 65536, 64 * MB)
    assert status(answer) == 431
    assert sent < 64 * MB  # answered while the header was still arriving
    assert_probe_fast(probe)
    with httpx.Client(base_url=abuse_server.url) as client:
        infer(client)


def test_100_000_headers_are_refused_with_431(
    abuse_server: ServerProcess, probe: Requester
) -> None:
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(1000))
    answer, _ = push(
        abuse_server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", fields, 100 * len(fields)
    )
    assert status(answer) == 431
    assert b"too many request headers" in answer
    assert_probe_fast(probe)


def test_eight_128_mb_header_lines_are_refused_without_holding_memory(
    abuse_server: ServerProcess, probe: Requester
) -> None:
    before = rss_mb(abuse_server.process.pid)
    first = b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nX-Line: "
    with ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda _: push(abuse_server, first, b"b" * 262144, 128 * MB), range(8))
        )
    assert [status(answer) for answer, _ in results] == [431] * 8
    assert rss_mb(abuse_server.process.pid) - before < 32
    assert_probe_fast(probe)


def test_a_websocket_upgrade_with_a_huge_first_line_is_answered_431(
    abuse_server: ServerProcess, probe: Requester
) -> None:
    request = (
        b"GET /predict/stream?" + b"q" * 16384 + b" HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(address(abuse_server)) as sock:
        sock.sendall(request)
        answer = read_answer(sock)
    assert status(answer) == 431
    assert_probe_fast(probe)


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[int(len(ordered) * 0.99) - 1]


#: Real requests timed on each server: p99 is the fifth slowest.
TIMED = 500
INFER_BODY = json.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": X}]}
)


class Opened:
    """Sockets opened by an attack, with when each was opened and seen closed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sockets: list[socket.socket] = []
        self.opened: dict[socket.socket, float] = {}
        self.answers: dict[socket.socket, bytes] = {}
        self.closed: dict[socket.socket, float] = {}

    def open(self, first: bytes = b"") -> socket.socket:
        sock = socket.create_connection(self.target)
        self.opened[sock] = time.monotonic()
        if first:
            sock.sendall(first)
        self.sockets.append(sock)
        return sock

    def wait_closed(self, by: float) -> None:
        """Read every socket until the server closes it, or until ``by`` (monotonic)."""
        with selectors.DefaultSelector() as selector:
            for sock in self.sockets:
                sock.setblocking(False)
                self.answers[sock] = b""
                selector.register(sock, selectors.EVENT_READ)
            while len(self.closed) < len(self.sockets) and time.monotonic() < by:
                for key, _ in selector.select(0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        data = sock.recv(65536)
                    except ConnectionResetError:
                        data = b""
                    if data:
                        self.answers[sock] += data
                    else:
                        self.closed[sock] = time.monotonic()
                        selector.unregister(sock)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@contextlib.contextmanager
def opened(target: tuple[str, int]) -> Iterator[Opened]:
    attack = Opened(target)
    try:
        yield attack
    finally:
        attack.close()


def trickle(sockets: list[socket.socket], stop: threading.Event) -> None:
    """A header field to every slow socket every half second, spread over the half second
    as independent clients would be; the head never ends."""
    field = 0
    pause = 0.5 / len(sockets)
    while not stop.is_set():
        field += 1
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.send(b"X-Slow-%d: 1\r\n" % field)
            if stop.wait(pause):
                return


@contextlib.contextmanager
def idle_and_slow(attack: Opened) -> Iterator[list[socket.socket]]:
    """2,000 silent connections and 500 that send a head a field at a time, never ending it;
    the slow ones, while the fields trickle."""
    for _ in range(2000):
        attack.open()
    slow = [attack.open(b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\n") for _ in range(500)]
    stop = threading.Event()
    trickling = threading.Thread(target=trickle, args=(slow, stop))
    trickling.start()
    try:
        yield slow
    finally:
        stop.set()
        trickling.join()


def test_idle_and_slow_header_connections_neither_starve_requests_nor_stay(
    abuse_server: ServerProcess, twin_server: ServerProcess, probe: Requester
) -> None:
    # "p99 within 3x of idle", on fair terms: real requests go in turn to the attacked
    # server and to its twin (same repository, same settings, no attack), from one process
    # of their own after a warm-up, so both series are timed at the same moments, with the
    # same load on this machine's CPUs (other work, the attacker's sockets and threads in
    # this process); they differ by what the attack costs the server it aims at. Timed one
    # phase after the other instead, a busy moment of a shared machine in either phase
    # decides the comparison; timed from a thread here, the attacker's GIL would.
    url = "/v2/models/tiny/infer"
    timed = Requester(
        abuse_server.url + url, twin_server.url + url, body=INFER_BODY, count=TIMED, warmup=50
    )
    with opened(address(abuse_server)) as attack:
        with idle_and_slow(attack) as slow:
            # The server accepts connections in the order they came: once a new one is
            # answered, it holds all 2,500 (the burst of accepting them is not the subject).
            assert httpx.get(f"{abuse_server.url}/healthz").status_code == 200
            timed.finish()
            measured_until = time.monotonic()
            last_opened = max(attack.opened.values())
            attack.wait_closed(by=last_opened + HEADER_TIMEOUT_S + CLOSE_SLACK_S)
        attacked_p99 = p99(timed.latencies_by_url[abuse_server.url + url])
        idle_p99 = p99(timed.latencies_by_url[twin_server.url + url])
        FIGURES.append(
            f"infer p99: {idle_p99 * 1000:.2f} ms idle (the twin), {attacked_p99 * 1000:.2f} ms "
            "attacked (2,000 idle + 500 slow-header connections)"
        )
        assert not timed.failures, timed.failures[:3]
        assert sum(timed.bodies.values()) == 2 * TIMED
        for body in timed.bodies:
            got = np.array(json.loads(body)["outputs"][0]["data"], dtype=np.float32)
            np.testing.assert_allclose(got.reshape(1, 2), EXPECTED, rtol=1e-5)
        assert measured_until < min(attack.opened.values()) + HEADER_TIMEOUT_S  # under attack
        assert attacked_p99 <= 3 * idle_p99
        assert len(attack.closed) == 2500
        lived = [attack.closed[s] - attack.opened[s] for s in attack.sockets]
        # Not before the limit (the server's clock starts as it accepts, a moment before
        # the client notes the connection open; its timers have millisecond resolution).
        assert min(lived) >= HEADER_TIMEOUT_S - 0.05
        assert max(lived) <= HEADER_TIMEOUT_S + CLOSE_SLACK_S
        assert {status(attack.answers[s]) for s in slow} == {408}
        assert {attack.answers[s] for s in attack.sockets if s not in slow} == {b""}
    assert_probe_fast(probe)


def test_slow_bodies_get_408_within_the_body_timeout(
    abuse_server: ServerProcess, probe: Requester
) -> None:
    head = b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
    with opened(address(abuse_server)) as attack:
        for _ in range(200):
            attack.open(head)
        last_opened = max(attack.opened.values())
        attack.wait_closed(by=last_opened + BODY_TIMEOUT_S + CLOSE_SLACK_S)
        assert len(attack.closed) == 200
        assert {status(answer) for answer in attack.answers.values()} == {408}
        assert max(attack.closed.values()) <= last_opened + BODY_TIMEOUT_S + CLOSE_SLACK_S
    assert_probe_fast(probe)
    with httpx.Client(base_url=abuse_server.url) as client:
        infer(client)

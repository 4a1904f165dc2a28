"""What the hostile corpus needs beside its table: raw HTTP/1.1 over a socket (so that a
request can lie, be smuggled or be malformed exactly as written) and the check that the
server is live and still answers correctly."""

from __future__ import annotations

import contextlib
import json
import socket
from typing import Any, Final

import httpx

GOOD_ROW: Final = [1.0, 2.0, 3.0, 4.0]
GOOD_INPUT: Final = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": GOOD_ROW}


def request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    length: bool = True,
) -> bytes:
    """One request as bytes; ``Content-Length`` from the body unless ``length`` is False
    (or the headers give their own)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: inferd"]
    given = {k.lower() for k in headers or {}}
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if length and "content-length" not in given and "transfer-encoding" not in given:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def post_json(path: str, doc: Any, headers: dict[str, str] | None = None) -> bytes:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return request("POST", path, raw, {"Content-Type": "application/json", **(headers or {})})


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes] | None:
    """The next response's status and body from ``sock`` (None once it is closed)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    size = int(fields.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    buffer[:] = body[size:]
    return status, bytes(body[:size])


def exchange(port: int, data: bytes, answers: int = 1, timeout: float = 10.0) -> list[int]:
    """Send ``data`` as is on a new connection; the statuses of the first ``answers``
    responses (fewer if the server closes first)."""
    statuses = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # refused mid-send: the answer may be there
            sock.sendall(data)
        buffer = bytearray()
        for _ in range(answers):
            try:
                got = read_response(sock, buffer)
            except ConnectionResetError:
                break
            if got is None:
                break
            statuses.append(got[0])
    return statuses


def assert_live_and_correct(client: httpx.Client, expected: list[float]) -> None:
    """The server answers its probe and serves a good request with the right answer."""
    assert client.get("/healthz").status_code == 200
    answer = client.post("/predict", json={"inputs": GOOD_ROW})
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == expected

"""Sends one HTTP request over and over on a kept-alive connection and times each answer.

tests/abuse runs this as a process of its own, never as a thread of the test: the test
process is the attacker (thousands of sockets, a thread trickling bytes into them, gRPC
and asyncio loops), and a thread beside it would wait for the GIL and for the attacker's
CPU, so it would time the attacker along with the server.

    python requester.py URL [URL...] [--body JSON] [--pause S] [--warmup N] [--count N]

Given several URLs it asks each in turn, on a connection of its own, so that their
latencies are taken at the same moments. It prints ``ready`` once the first answers came
(after ``--warmup`` untimed rounds), then waits for a line on stdin and sends ``--count``
rounds back to back; without ``--count`` it sends until stdin closes, ``--pause`` seconds
apart, and one round more. Last it prints one JSON line: ``latencies`` (seconds, a list
per URL), ``failures`` (what was not a 200), ``bodies`` (each distinct answer body and
how often it came) and ``slowest_at`` (``time.monotonic()`` when the slowest was sent).
Standard library only, so that it starts in a few milliseconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from collections import Counter


class Connection:
    """One kept-alive connection to ``url``; opened again after a failure."""

    def __init__(self, url: str, body: str | None) -> None:
        parts = urllib.parse.urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = parts.path or "/"
        self._method = "GET" if body is None else "POST"
        self._body = None if body is None else body.encode()
        self._headers = {} if body is None else {"Content-Type": "application/json"}
        self._connection: http.client.HTTPConnection | None = None

    def send(self) -> tuple[int, bytes]:
        """The status and body of one answer; status 0 when the exchange failed."""
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self._host, self._port, timeout=10)
        try:
            self._connection.request(self._method, self._path, self._body, self._headers)
            answer = self._connection.getresponse()
            return answer.status, answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self._connection.close()
            self._connection = None
            return 0, repr(exc).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("urls", nargs="+")
    parser.add_argument("--body", default=None)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--count", type=int, default=None)
    args = parser.parse_args()

    connections = [Connection(url, args.body) for url in args.urls]
    for _ in range(max(1, args.warmup)):
        for connection in connections:
            connection.send()
    print("ready", flush=True)

    stop = threading.Event()
    if args.count is None:
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    else:
        sys.stdin.readline()
    latencies: list[list[float]] = [[] for _ in connections]
    failures: list[str] = []
    bodies: Counter[str] = Counter()
    starts: list[float] = []  # monotonic: the same clock in every process
    rounds = 0
    while True:
        last = stop.is_set()  # the last round starts after the stop: once the attack is over
        for connection, timings in zip(connections, latencies, strict=True):
            started = time.monotonic()
            status, body = connection.send()
            timings.append(time.monotonic() - started)
            starts.append(started)
            text = body.decode(errors="replace")
            if status == 200:
                bodies[text] += 1
            else:
                failures.append(f"{status}: {text[:100]}")
        rounds += 1
        if last or rounds == args.count:
            break
        if args.pause:
            stop.wait(args.pause)
    slowest = max(
        range(len(starts)), key=lambda i: latencies[i % len(connections)][i // len(connections)]
    )
    result = {
        "latencies": latencies,
        "failures": failures,
        "bodies": bodies,
        "slowest_at": starts[slowest],
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

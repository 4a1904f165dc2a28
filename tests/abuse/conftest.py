"""Hostile clients against real server processes.

Shared here: a server over the example's ``tiny`` and models of other datatypes, with
small limits (so that the cases run in seconds), and its twin; :class:`Requester`, a process of its own that sends one request over and
over and times each answer, used as the probe that asks ``/healthz`` while an attack runs
and to time real requests; and the slowest ``/healthz`` answer of each attack, printed at
the end of the run. The test process opens thousands of sockets: its soft limit on open files
is raised to the hard one (the server raises its own, see README "Limits").
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.abuse.payloads_support import payload_repo
from tests.conftest import ServerProcess

#: Slowest ``/healthz`` answer allowed while an attack runs.
HEALTHZ_BUDGET_S: Final = 0.25

#: How long the probe waits between two ``/healthz`` requests.
PROBE_PAUSE_S: Final = 0.005

REQUESTER: Final = Path(__file__).with_name("requester.py")

#: The limits of the shared server: small timeouts so that slow clients are closed quickly.
LIMITS: Final[dict[str, Any]] = {
    "http": {
        "header_timeout_s": 6.0,
        "body_timeout_s": 3.0,
        "keepalive_timeout_s": 30.0,
        "max_connections": 4000,
    },
    "grpc": {"max_concurrent_rpcs": 100, "max_health_watchers": 50},
}

#: The shared servers' settings: :data:`LIMITS`, and WebSocket messages past the default
#: rate (the metrics test sends many on one stream).
CONFIG: Final[dict[str, Any]] = {"limits": LIMITS, "stream": {"max_messages_per_second": 100_000}}

#: The slowest ``/healthz`` answer of each attack, by test, for the summary.
MEASURED: dict[str, float] = {}

#: Other figures the tests measured, one line each, for the summary.
FIGURES: list[str] = []


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_raise_open_files()


def write_config(path: Path, limits: dict[str, Any], **sections: Any) -> Path:
    path.write_text(yaml.safe_dump({"limits": limits, **sections}))
    return path


@pytest.fixture(scope="session")
def abuse_servers(
    example_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two like servers for the whole run, started side by side: the one the attacks aim
    at and its twin, which no attack aims at (a baseline measured at the same moments).
    Each serves the example's ``tiny`` and the payload models (``payloads_support``) with
    :data:`CONFIG`."""
    folder = tmp_path_factory.mktemp("abuse")
    repository = payload_repo(example_repo, folder / "models")
    config = folder / "inferd.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    servers = [
        ServerProcess(repository, "--config", str(config), "--default-model", "tiny")
        for _ in range(2)
    ]
    try:
        for server in servers:
            server.wait_ready()
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def abuse_server(abuse_servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    """The server the attacks aim at."""
    return abuse_servers[0]


@pytest.fixture(scope="session")
def twin_server(abuse_servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    """A server like :func:`abuse_server` that no attack aims at."""
    return abuse_servers[1]


class Requester:
    """A ``requester.py`` process: one request sent over and over on kept-alive connections
    and timed from outside the test process (see that script for why).

    It starts and warms up at construction. Without ``count`` it sends until
    :meth:`finish`, ``pause`` seconds apart; with ``count`` it sends that many rounds back
    to back once :meth:`finish` is called. Given several URLs it asks each in turn. After
    :meth:`finish`: ``latencies`` (seconds, the first URL's), ``latencies_by_url``,
    ``failures`` (answers other than 200) and ``bodies`` (distinct 200 bodies, counted).
    """

    def __init__(
        self,
        *urls: str,
        body: str | None = None,
        count: int | None = None,
        warmup: int = 1,
        pause: float = 0.0,
    ) -> None:
        command = [sys.executable, str(REQUESTER), *urls, "--warmup", str(warmup)]
        command += ["--pause", str(pause)]
        if body is not None:
            command += ["--body", body]
        if count is not None:
            command += ["--count", str(count)]
        self._urls = urls
        self.started_at = time.monotonic()
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self._process.kill()
            self._process.wait()
            raise AssertionError(f"the requester for {urls} did not start")
        self._finished = False
        self.latencies_by_url: dict[str, list[float]] = {url: [] for url in urls}
        self.failures: list[str] = []
        self.bodies: dict[str, int] = {}
        self.slowest_at = 0.0

    def finish(self, timeout: float = 120) -> Requester:
        """Let it send its ``count`` (or stop it) and collect what it measured; once."""
        if not self._finished:
            self._finished = True
            output, _ = self._process.communicate("\n", timeout=timeout)
            result = json.loads(output.splitlines()[-1])
            self.latencies_by_url = dict(zip(self._urls, result["latencies"], strict=True))
            self.failures = result["failures"]
            self.bodies = result["bodies"]
            self.slowest_at = result["slowest_at"]
        return self

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    @property
    def latencies(self) -> list[float]:
        return self.latencies_by_url[self._urls[0]]

    @property
    def slowest_s(self) -> float:
        return max(self.latencies, default=0.0)


@pytest.fixture
def probe(abuse_server: ServerProcess) -> Iterator[Requester]:
    """A ``/healthz`` probe on the shared server, running for the test."""
    with probing(abuse_server) as running:
        yield running


@contextlib.contextmanager
def probing(server: ServerProcess, name: str | None = None) -> Iterator[Requester]:
    """Asks ``/healthz`` every 5 ms from a process of its own until the block ends (or
    :func:`assert_probe_fast` stops it); the slowest answer goes to the run's summary."""
    running = Requester(f"{server.url}/healthz", pause=PROBE_PAUSE_S)
    try:
        yield running
        running.finish()
    finally:
        running.kill()
        key = name or _current_test()
        MEASURED[key] = max(MEASURED.get(key, 0.0), running.slowest_s)


def _current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::")[-1]


def assert_probe_fast(running: Requester) -> None:
    """Stop the probe (the attack is over) and check that every ``/healthz`` it asked was
    answered 200 within :data:`HEALTHZ_BUDGET_S`."""
    running.finish()
    slowest = (
        f"/healthz: slowest {running.slowest_s * 1000:.1f} ms of {len(running.latencies)}, "
        f"asked {running.slowest_at - running.started_at:.2f} s after the probe started"
    )
    print(f"\n{slowest}")
    assert running.latencies
    assert not running.failures, running.failures[:3]
    assert running.slowest_s < HEALTHZ_BUDGET_S, slowest


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASURED:
        terminalreporter.section("slowest /healthz answer during each attack")
        for name, seconds in sorted(MEASURED.items()):
            terminalreporter.write_line(f"{seconds * 1000:8.1f} ms  {name}")
    for line in FIGURES:
        terminalreporter.write_line(line)

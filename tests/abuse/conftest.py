"""Hostile clients against real server processes.

Shared here: a server over the example repository with small limits (so that the cases
run in seconds), a probe that asks ``/healthz`` over and over in a thread while an attack
runs and records the slowest answer, and the figures every probe measured, printed at the
end of the run. The test process opens thousands of sockets: its soft limit on open files
is raised to the hard one (the server raises its own, see README "Limits").
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import yaml

from tests.conftest import ServerProcess

#: Slowest ``/healthz`` answer allowed while an attack runs.
HEALTHZ_BUDGET_S: Final = 0.25

#: The limits of the shared server: small timeouts so that slow clients are closed quickly.
LIMITS: Final[dict[str, Any]] = {
    "http": {
        "header_timeout_s": 4.0,
        "body_timeout_s": 3.0,
        "keepalive_timeout_s": 30.0,
        "max_connections": 4000,
    },
    "grpc": {"max_concurrent_rpcs": 100, "max_health_watchers": 50},
}

#: The slowest ``/healthz`` answer of each attack, by test, for the summary.
MEASURED: dict[str, float] = {}


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


_raise_open_files()


def write_config(path: Path, limits: dict[str, Any], **sections: Any) -> Path:
    path.write_text(yaml.safe_dump({"limits": limits, **sections}))
    return path


@pytest.fixture(scope="session")
def abuse_server(
    example_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server over the example repository with :data:`LIMITS`, for the whole run."""
    config = write_config(tmp_path_factory.mktemp("abuse") / "inferd.yaml", LIMITS)
    server = ServerProcess(example_repo, "--config", str(config), "--default-model", "tiny")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


class HealthzProbe:
    """Asks ``/healthz`` every few milliseconds from a thread of its own, on one kept-alive
    connection; remembers the slowest answer and any failure."""

    def __init__(self, url: str) -> None:
        self._url = f"{url}/healthz"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-probe", daemon=True)
        self.slowest_s = 0.0
        self.answers = 0
        self.failures: list[str] = []

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    status = client.get(self._url).status_code
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    if status != 200:
                        self.failures.append(f"status {status}")
                self.slowest_s = max(self.slowest_s, time.perf_counter() - started)
                self.answers += 1
                self._stop.wait(0.005)

    def start(self) -> None:
        self._thread.start()
        # The first answer opens the connection; the attack starts after it.
        deadline = time.monotonic() + 10
        while self.answers == 0 and time.monotonic() < deadline:
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


@pytest.fixture
def probe(abuse_server: ServerProcess) -> Iterator[HealthzProbe]:
    """A :class:`HealthzProbe` on the shared server, running for the test."""
    with probing(abuse_server) as running:
        yield running


@contextlib.contextmanager
def probing(server: ServerProcess, name: str | None = None) -> Iterator[HealthzProbe]:
    running = HealthzProbe(server.url)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        key = name or _current_test()
        MEASURED[key] = max(MEASURED.get(key, 0.0), running.slowest_s)


def _current_test() -> str:
    import os

    return os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::")[-1]


def assert_probe_fast(running: HealthzProbe) -> None:
    """Every ``/healthz`` answered 200 within :data:`HEALTHZ_BUDGET_S` so far."""
    assert running.answers > 0
    assert not running.failures, running.failures[:3]
    assert running.slowest_s < HEALTHZ_BUDGET_S, f"/healthz took {running.slowest_s * 1000:.0f} ms"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASURED:
        terminalreporter.section("slowest /healthz answer during each attack")
        for name, seconds in sorted(MEASURED.items()):
            terminalreporter.write_line(f"{seconds * 1000:8.1f} ms  {name}")

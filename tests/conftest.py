"""Shared fixtures: the example repository, in-process apps and real server processes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from inferd.core.node import Node, build_node
from inferd.example import build_example
from inferd.http.app import create_app
from inferd.settings import load_settings

NodeFactory = Callable[..., Node]


def _below_ephemeral() -> Iterator[int]:
    """Ports below the kernel's ephemeral range, from a start that differs per process."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    ports = range(max(1024, low - 12000), low)
    start = os.getpid() % len(ports)
    return iter([*ports[start:], *ports[:start]])


_CANDIDATES = _below_ephemeral()


def free_port() -> int:
    """A loopback port nothing listens on, for a server the test starts later; never the
    same one twice in a session. Not from ``bind(0)``: that hands out a port of the
    ephemeral range, which the kernel also gives to outgoing connections as their source
    port, so one of those could take it before the server binds it."""
    for port in _CANDIDATES:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port left below the ephemeral range")


#: How often a waiting test checks its condition.
POLL_S = 0.01


class _Deadline:
    """The one rule for a test that waits for a condition: it gives up after ``timeout``
    seconds and fails naming what it waited for."""

    def __init__(self, timeout: float, what: str) -> None:
        self._at = time.monotonic() + timeout
        self._timeout = timeout
        self._what = what

    def check(self) -> None:
        if time.monotonic() > self._at:
            raise AssertionError(f"timed out after {self._timeout:g} s waiting for {self._what}")


def wait_until(
    condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds, blocking (a test without an event loop, or a
    thread); fail the test after ``timeout`` seconds. On an event loop, use :func:`until`."""
    deadline = _Deadline(timeout, what)
    while not condition():
        deadline.check()
        time.sleep(POLL_S)


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 30.0,
    what: str = "condition",
) -> None:
    """:func:`wait_until` on the event loop: the loop runs on between polls, and
    ``condition`` may be a coroutine function (a request the test makes)."""
    deadline = _Deadline(timeout, what)
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        deadline.check()
        await asyncio.sleep(POLL_S)


@pytest.fixture(scope="session")
def example_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_example(root)
    return root


def make_settings(repository: Path | None, **sections: dict[str, Any]) -> Any:
    overrides: dict[str, Any] = {"models": {"repository": repository}}
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_settings(None, overrides, environ={})


@pytest.fixture
async def node_factory() -> AsyncIterator[NodeFactory]:
    """Builds services over a repository; every one built is stopped at teardown."""
    made: list[Node] = []

    def make(repository: Path | None, **sections: dict[str, Any]) -> Node:
        node = build_node(make_settings(repository, **sections))
        made.append(node)
        return node

    yield make
    for node in made:
        await node.stop()


async def asgi_client(node: Node) -> httpx.AsyncClient:
    """An httpx client over the ASGI app of a started service (no sockets)."""
    await node.start()
    app = create_app(node)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://inferd")


@pytest.fixture
async def example_client(
    example_repo: Path, node_factory: NodeFactory
) -> AsyncIterator[httpx.AsyncClient]:
    node = node_factory(example_repo, models={"default_model": "tiny"})
    async with await asgi_client(node) as client:
        yield client


def serve_command(repository: Path, http_port: int, grpc_port: int, *extra: str) -> list[str]:
    """``inferd serve`` on loopback ports, quiet but for warnings."""
    return [
        sys.executable,
        "-m",
        "inferd",
        "serve",
        str(repository),
        "--host",
        "127.0.0.1",
        "--port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--log-level",
        "warning",
        *extra,
    ]


def clean_environment() -> dict[str, str]:
    """This process's environment without settings (``INFERENCE_*``) that would leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}


class ServerProcess:
    """A real ``inferd serve`` process on free loopback ports."""

    def __init__(
        self,
        repository: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> None:
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        command = serve_command(repository, self.http_port, self.grpc_port, *extra)
        environment = clean_environment()
        environment.update(env or {})
        self.process = subprocess.Popen(command, env=environment, stderr=stderr)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}")
            try:
                return httpx.get(f"{self.url}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, "the server to be ready")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="session")
def live_server(example_repo: Path) -> Iterator[ServerProcess]:
    """One real server over the example repository for the whole session (read-only use)."""
    server = ServerProcess(example_repo, "--default-model", "tiny")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def text_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repository with minilm, built once by `inferd example --text DIR`."""
    root = tmp_path_factory.mktemp("text")
    subprocess.run(
        [sys.executable, "-m", "inferd", "example", "--text", str(root)],
        check=True,
        capture_output=True,
    )
    return root


@pytest.fixture(scope="session")
def stream_repo(example_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Streaming models that record their steps (see tests/streaming.py)."""
    from tests.streaming import write_stream_repo

    return write_stream_repo(tmp_path_factory.mktemp("stream-models"), example_repo)


@pytest.fixture(scope="session")
def stream_server(stream_repo: Path) -> Iterator[ServerProcess]:
    """One real server over the streaming models for the whole session."""
    server = ServerProcess(stream_repo, "--default-model", "tiny")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def system_binary(name: str) -> str:
    """The path of a system program the test needs (``make test`` installs it). Missing:
    the test fails under CI, else it is skipped with the reason."""
    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None
    )
    if path is None:
        message = f"{name} is not installed (make system-deps installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class RedisServer:
    """A real redis-server on a free loopback port, nothing saved to disk."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.uri = f"redis://127.0.0.1:{self.port}/0"
        command = [
            system_binary("redis-server"),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_until(self.answers, 10, "redis-server to answer")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def worker_pids(supervisor: int) -> list[int]:
    """The worker processes of a ``--workers`` supervisor (its resource tracker left out)."""
    try:
        text = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text()
    except OSError:
        return []
    workers = []
    for pid in (int(p) for p in text.split()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")
        except OSError:  # it exited (and was reaped) since the list was read
            continue
        if "resource_tracker" not in command:
            workers.append(pid)
    return workers


@contextlib.contextmanager
def paused(*pids: int) -> Iterator[None]:
    """Stop the processes (SIGSTOP) for the block: their sockets stay open, they serve nothing."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def ready(url: str, path: str = "/ready") -> bool:
    """``GET path`` (``/ready`` by default) on a new connection answers 200."""
    try:
        return httpx.get(f"{url}{path}", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def wait_workers_ready(url: str, pids: list[int], timeout: float = 60.0) -> None:
    """Wait until every worker is ready: each alone, the others paused (a paused worker
    accepts no connection on the shared port). Each is asked ``/v2/health/ready``, its own
    readiness: ``/ready`` asks the whole group, paused workers included, and would wait on
    them."""
    for pid in pids:
        with paused(*(other for other in pids if other != pid)):
            wait_until(lambda: ready(url, "/v2/health/ready"), timeout, f"worker {pid} ready")

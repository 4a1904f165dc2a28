"""Load generators and what one measured point holds.

HTTP load comes from wrk (one thread, N connections, a generated Lua script that sets the
POST body and prints the result as JSON from its ``done`` hook); gRPC load from
``pyload.py`` (gRPC and WebSocket). Either runs as a child process whose CPU time is read from ``wait4``, so
the table can say how much of the machine the generator itself took; the server's CPU
time comes from ``/proc/PID/stat`` and the rest of the machine's (other processes: the
noise) from ``/proc/stat``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

HERE = Path(__file__).resolve().parent
WRK_MARK = "WRK_JSON "

#: wrk's ``done`` hook: the summary as one JSON line after WRK_MARK ({{ }} are braces).
WRK_DONE = """\
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, '
    .. '"p50_us": %.1f, "p99_us": %.1f}}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

LUA_TEMPLATE = (
    """\
local file = assert(io.open({body}, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
{headers}
"""
    + WRK_DONE
)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One contestant at one concurrency. Every request carries one row."""

    model: str
    contestant: str
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    generator_cpu_pct: float
    server_cpu_pct: float
    other_cpu_pct: float
    #: inferd only, from its statistics endpoint over the point: rows per model execution,
    #: time per execution, and time a request waited in the batch queue.
    mean_batch: float | None = None
    model_ms_per_batch: float | None = None
    queue_ms: float | None = None

    @property
    def req_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.req_per_s

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "req_per_s": self.req_per_s}


class CpuClock(Protocol):
    def cpu_seconds(self) -> float: ...


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all cores spent outside idle and iowait since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclasses.dataclass(frozen=True)
class CpuShares:
    """CPU use over a window, in % of one core: generator, server, everything else."""

    generator: float
    server: float
    other: float


class CpuWindow:
    def __init__(self, server: CpuClock) -> None:
        self.server = server
        self.start = (time.perf_counter(), server.cpu_seconds(), machine_busy_seconds())

    def close(self, generator_cpu_s: float) -> CpuShares:
        wall = time.perf_counter() - self.start[0]
        server = self.server.cpu_seconds() - self.start[1]
        machine = machine_busy_seconds() - self.start[2]
        other = max(machine - server - generator_cpu_s, 0.0)
        return CpuShares(*(100 * x / wall for x in (generator_cpu_s, server, other)))


@dataclasses.dataclass(frozen=True)
class HttpTarget:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclasses.dataclass(frozen=True)
class PyTarget:
    """A target of ``pyload.py``: protocol ``grpc`` (address host:port) or ``ws`` (address
    ws://host:port)."""

    protocol: str
    address: str
    model: str
    row: bytes


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII text is a valid Lua string literal


def write_wrk_script(target: HttpTarget, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    body = Path(tempfile.mkstemp(suffix=".body", dir=folder)[1])
    body.write_bytes(target.body)
    headers = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in target.headers.items()
    )
    script = body.with_suffix(".lua")
    script.write_text(
        LUA_TEMPLATE.format(body=_lua_string(str(body)), headers=headers, mark=WRK_MARK)
    )
    return script


@dataclasses.dataclass(frozen=True)
class _Run:
    output: str
    cpu_s: float


def _run_measured(command: list[str], timeout: float) -> _Run:
    """Run a child to completion; its output and CPU time (user + system)."""
    with tempfile.TemporaryFile() as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        try:
            _, status, usage = _wait4(process.pid, timeout)
        except TimeoutError:
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
        sink.seek(0)
        output = sink.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{output}")
    return _Run(output, usage.ru_utime + usage.ru_stime)


def _wait4(pid: int, timeout: float) -> tuple[int, int, Any]:
    deadline = time.monotonic() + timeout
    while True:
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited:
            return waited, status, usage
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} ran past {timeout:.0f} s")
        time.sleep(0.02)


def wrk(
    script: Path, url: str, concurrency: int, duration: float, server: CpuClock
) -> tuple[dict[str, Any], CpuShares]:
    """wrk's JSON summary and the CPU shares while it ran."""
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(duration, 1):.0f}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    window = CpuWindow(server)
    run = _run_measured(command, timeout=duration + 60)
    shares = window.close(run.cpu_s)
    line = next((x for x in run.output.splitlines() if x.startswith(WRK_MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{run.output}")
    return json.loads(line[len(WRK_MARK) :]), shares


def measure_http(
    model: str,
    contestant: str,
    script: Path,
    url: str,
    concurrency: int,
    duration: float,
    server: CpuClock,
) -> Measurement:
    summary, cpu = wrk(script, url, concurrency, duration, server)
    errors = summary["status_errors"] + summary["socket_errors"]
    return Measurement(
        model=model,
        contestant=contestant,
        concurrency=concurrency,
        requests=summary["requests"] - summary["status_errors"],
        errors=errors,
        duration_s=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        generator_cpu_pct=cpu.generator,
        server_cpu_pct=cpu.server,
        other_cpu_pct=cpu.other,
    )


def measure_py(
    model: str,
    contestant: str,
    target: PyTarget,
    folder: Path,
    concurrency: int,
    duration: float,
    server: CpuClock,
    warmup: float = 1.0,
) -> Measurement:
    """The client reports its own CPU time over its measured window; the server's and the
    machine's are read when the client says the window opens and when it reports."""
    folder.mkdir(parents=True, exist_ok=True)
    row = folder / f"{target.model}.f32"
    row.write_bytes(target.row)
    command = [
        sys.executable,
        str(HERE / "pyload.py"),
        target.protocol,
        target.address,
        target.model,
        str(row),
        f"--concurrency={concurrency}",
        f"--duration={duration}",
        f"--warmup={warmup}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    with process:
        lines = iter(process.stdout.readline, "")
        window = next((CpuWindow(server) for x in lines if x.strip() == "start"), None)
        last = next(lines, "")
        process.wait(timeout=60)
    if process.returncode != 0 or window is None:
        raise RuntimeError(f"pyload.py exited with {process.returncode}: {last}")
    result = json.loads(last)
    cpu = window.close(result["cpu_s"])
    return Measurement(
        model=model,
        contestant=contestant,
        concurrency=concurrency,
        requests=result["requests"],
        errors=result["errors"],
        duration_s=result["duration_s"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        generator_cpu_pct=cpu.generator,
        server_cpu_pct=cpu.server,
        other_cpu_pct=cpu.other,
    )

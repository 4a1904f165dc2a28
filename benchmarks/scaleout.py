"""Prediction cache and scale-out, measured in one run; writes its section of RESULTS.md.

1. The wide model (256 -> 2048 -> 2048 -> 16, ONNX) on one inferd: the same request
   answered from the prediction cache (every request a hit) against the model with the
   cache off (every request computed).
2. The wide model on three inferd replicas behind nginx (deploy/nginx/inferd.conf) against
   one replica served directly, with the CPU each side used.

Usage: ``python benchmarks/scaleout.py [--seconds 5] [--connections 32]`` (``make
bench-scaleout``). Needs wrk and nginx (``make system-deps``, ``benchmarks/install-tools.sh``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from benchmarks.loadgen import CLOCK_TICKS, HttpTarget, Measurement, measure_http, write_wrk_script  # noqa: E402  # noqa: E402
from inferd.example import WIDE, mlp_weights, tensor_yaml, write_onnx  # noqa: E402
from tests.cluster.proxies import Nginx, Replica  # noqa: E402
from tests.conftest import free_port  # noqa: E402

RESULTS = HERE / "RESULTS.md"
BEGIN = "<!-- scaleout:begin -->"
END = "<!-- scaleout:end -->"


class Processes:
    """CPU time of a set of processes (and their children), as a loadgen CpuClock."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def _all(self) -> list[int]:
        found, todo = [], list(self.pids)
        while todo:
            pid = todo.pop()
            found.append(pid)
            children = Path(f"/proc/{pid}/task/{pid}/children")
            if children.exists():
                todo += [int(p) for p in children.read_text().split()]
        return found

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in self._all():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        return total


class Inferd(Replica):
    def __init__(self, repository: Path, log: Path) -> None:
        super().__init__(free_port(), free_port())
        self.url = f"http://127.0.0.1:{self.http_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
        env["PYTHONPATH"] = str(ROOT / "src")
        command = [sys.executable, "-m", "inferd", "serve", str(repository)]
        command += ["--port", str(self.http_port), "--grpc-port", str(self.grpc_port)]
        command += ["--log-level", "warning"]
        self.process = subprocess.Popen(
            command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"inferd exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("inferd was not ready in time")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def repository(root: Path) -> Path:
    weights = mlp_weights(WIDE, seed=1)
    for name, cache in (("wide", None), ("wide_cached", {"enabled": True})):
        write_onnx(weights, root / name / "1" / "model.onnx")
        extra: dict[str, Any] = {"max_batch_size": 64}
        if cache:
            extra["cache"] = cache
        (root / name / "model.yaml").write_text(tensor_yaml(WIDE, "onnx", **extra))
    return root


def body() -> bytes:
    row = np.random.default_rng(42).standard_normal(WIDE[0], dtype=np.float32)
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, WIDE[0]], "data": row.tolist()}
    return orjson.dumps({"inputs": [tensor]})


def point(
    folder: Path,
    label: str,
    url: str,
    clock: Processes,
    args: argparse.Namespace,
    connections: int | None = None,
) -> Measurement:
    script = write_wrk_script(HttpTarget(url, body(), {"Content-Type": "application/json"}), folder)
    conns = connections or args.connections
    measure_http("wide", label, script, url, conns, 1, clock)  # warm-up
    return measure_http("wide", label, script, url, conns, args.seconds, clock)


def cpu_ms(m: Measurement) -> float:
    """Server CPU per answered request."""
    return m.server_cpu_pct / 100 * m.duration_s / max(m.requests, 1) * 1000


def row(m: Measurement) -> str:
    rate = m.requests / m.duration_s
    return (
        f"| {m.contestant} | {m.concurrency} | {rate:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | "
        f"{m.server_cpu_pct:.0f} | {cpu_ms(m):.3f} | {m.generator_cpu_pct:.0f} | "
        f"{m.other_cpu_pct:.0f} | {m.errors} |"
    )


def rate(m: Measurement) -> float:
    return m.requests / m.duration_s


def run(args: argparse.Namespace, folder: Path) -> str:
    repo = repository(folder / "models")
    one = Inferd(repo, folder / "one.log")
    points: list[Measurement] = []
    try:
        one.wait_ready()
        clock = Processes([one.process.pid])
        computed = f"{one.url}/v2/models/wide/infer"
        cached = f"{one.url}/v2/models/wide_cached/infer"
        miss1 = point(folder, "cache off: every request computed", computed, clock, args, 1)
        hit1 = point(folder, "cache on: every request a hit", cached, clock, args, 1)
        miss = point(folder, "cache off: every request computed", computed, clock, args)
        hit = point(folder, "cache on: every request a hit", cached, clock, args)
        direct = point(folder, "one replica, direct (cache off)", computed, clock, args)
        points += [miss1, hit1, miss, hit, direct]
    finally:
        one.stop()
    replicas = [Inferd(repo, folder / f"replica{n}.log") for n in range(3)]
    nginx: Nginx | None = None
    try:
        for replica in replicas:
            replica.wait_ready()
        (folder / "nginx").mkdir()
        nginx = Nginx(folder / "nginx", replicas)
        clock = Processes([r.process.pid for r in replicas] + [nginx.process.pid])
        behind = point(
            folder, "three replicas behind nginx", f"{nginx.url}/v2/models/wide/infer", clock, args
        )
        points.append(behind)
    finally:
        if nginx is not None:
            nginx.stop()
        for replica in replicas:
            replica.stop()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Prediction cache and scale-out (`benchmarks/scaleout.py`)",
        "",
        f"- {now}, inferd at `{commit}`, {os.cpu_count()} cores; command: "
        f"`python benchmarks/scaleout.py --seconds {args.seconds:g} --connections {args.connections}`.",
        f"- wide (ONNX), REST V2 JSON, one row per request, wrk with {args.connections} "
        f"keep-alive connections, {args.seconds:g} s per point after a 1 s warm-up. "
        "'server CPU' is every inferd process measured (and nginx), in % of one core.",
        "",
        "| setup | conns | req/s | p50 ms | p99 ms | server CPU % | server CPU ms/req | wrk CPU % "
        "| other CPU % | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        *(row(m) for m in points),
        "",
        f"- Cache hits / computed, throughput: **{rate(hit1) / rate(miss1):.1f}x** at 1 connection, "
        f"**{rate(hit) / rate(miss):.1f}x** at {args.connections} (goal >= 5x); server CPU per "
        f"request, computed / hit: **{cpu_ms(miss1) / cpu_ms(hit1):.1f}x** at 1 connection, "
        f"**{cpu_ms(miss) / cpu_ms(hit):.1f}x** at {args.connections}.",
        f"- Three replicas behind nginx / one replica direct: **{rate(behind) / rate(direct):.2f}x** "
        f"the throughput, {cpu_ms(behind) / cpu_ms(direct):.2f}x the CPU per request. "
        "Replicas on one machine add no cores: here three replicas and nginx share the "
        "same 2 cores with wrk and with whatever else runs (the 'other CPU' column), and "
        "every request pays a proxy hop; the row measures that cost, not what more "
        "machines would give. Batching at 32 connections already makes computing cheap "
        "(rows share one model call), so the cache saves less there than at 1 connection.",
        END,
    ]
    return "\n".join(lines)


def write_section(
    section: str, results: Path = RESULTS, begin: str = BEGIN, end: str = END
) -> None:
    """Put ``section`` (marked by ``begin`` and ``end``) in ``results``: in place of the
    marked one, else at the end; the rest of the file stays as it is."""
    text = results.read_text() if results.exists() else ""
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    results.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferd-scaleout-") as folder:
        section = run(args, Path(folder))
    write_section(section)
    print(section)


if __name__ == "__main__":
    main()

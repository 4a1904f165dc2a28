"""The gateway's cost: tiny REST JSON at 64 connections, with and without the gateway's work.

Two inferd processes over the same tiny model run side by side: ``bare`` (rate limit off)
and ``gateway`` (an API key required, ``server.require_api_key``, and an in-memory rate
limit set far above the load; the client sends the key; ``--gateway-env NAME=VALUE`` adds
settings).
wrk runs against them in turns, ``--rounds`` times each, so that noise from the rest of the
machine falls on both. It prints the ratio of the median throughputs, and the ratio of the
median server CPU time per request, which a machine shared with other work disturbs less.

    python benchmarks/gateway.py --duration 5 --rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from loadgen import HttpTarget, measure_http, write_wrk_script
from servers import Server, free_port, http_ok, post

HERE = Path(__file__).resolve().parent
ROW = json.dumps({"inputs": [1.0, 2.0, 3.0, 4.0]}).encode()
KEY = "bench-key-0123456789abcdef"
#: Far above what the machine can serve: the limiter counts, it never refuses.
HIGH_LIMIT = 1_000_000_000


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--gateway-env", action="append", default=[], help="NAME=VALUE for the gateway server"
    )
    return parser.parse_args()


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``env`` added, for the child processes started meanwhile."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def inferd(name: str, repo: Path, env: dict[str, str], logs: Path) -> Iterator[tuple[Server, str]]:
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("inferd")),
        "serve",
        str(repo),
        f"--port={port}",
        "--grpc-port=0",
        "--log-level=warning",
        "--default-model=tiny",
    ]
    base = f"http://127.0.0.1:{port}"
    with environment(env):
        server = Server(name, command, logs / f"{name}.log")
    try:
        server.wait_until(lambda: http_ok(f"{base}/ready"))
        yield server, base
    finally:
        server.stop()


def main() -> None:
    options = parse()
    work = Path(tempfile.mkdtemp(prefix="inferd-gateway-bench-"))
    for name in [k for k in os.environ if k.startswith("INFERENCE_")]:
        del os.environ[name]
    sys.path.insert(0, str(HERE.parent / "src"))
    from inferd.example import build_example

    build_example(work / "example")
    repo = work / "models"
    repo.mkdir()
    shutil.copytree(work / "example" / "tiny", repo / "tiny")
    gateway_env = {
        "INFERENCE_SERVER__API_KEYS": f"bench:infer:{hashlib.sha256(KEY.encode()).hexdigest()}",
        "INFERENCE_SERVER__REQUIRE_API_KEY": "true",
        "INFERENCE_SAFEGUARDS__RATE_LIMIT__ENABLED": "true",
        "INFERENCE_SAFEGUARDS__RATE_LIMIT__REQUESTS_PER_MINUTE": str(HIGH_LIMIT),
        **dict(item.split("=", 1) for item in options.gateway_env),
    }
    headers = {"Content-Type": "application/json"}
    targets = {
        "bare": HttpTarget("/predict", ROW, headers),
        "gateway": HttpTarget("/predict", ROW, {**headers, "Authorization": f"Bearer {KEY}"}),
    }
    results: dict[str, list[float]] = {"bare": [], "gateway": []}
    cpu_per_request: dict[str, list[float]] = {"bare": [], "gateway": []}
    with ExitStack() as stack:
        servers = {
            "bare": stack.enter_context(inferd("bare", repo, {}, work / "logs")),
            "gateway": stack.enter_context(inferd("gateway", repo, gateway_env, work / "logs")),
        }
        scripts = {}
        for name, (_, base) in servers.items():
            target = targets[name]
            status, body, _ = post(base + target.url, target.body, target.headers)
            if status != 200:
                raise SystemExit(f"{name}: {status} {body[:200]!r}")
            scripts[name] = write_wrk_script(target, work / "wrk")
            measure_http("tiny", name, scripts[name], base + target.url, 8, 1.0, servers[name][0])
        order = list(servers)
        for _ in range(options.rounds):
            # ABBA: the machine's speed drifts during a run (other tenants, thermal); the
            # server measured second in one round goes first in the next, so a drift does
            # not always fall on the same one.
            for name in order:
                server, base = servers[name]
                point = measure_http(
                    "tiny",
                    name,
                    scripts[name],
                    base + targets[name].url,
                    options.connections,
                    options.duration,
                    server,
                )
                if point.errors:
                    raise SystemExit(f"{name}: {point.errors} errors")
                results[name].append(point.req_per_s)
                cpu_us = point.server_cpu_pct / 100 * 1e6 / point.req_per_s
                cpu_per_request[name].append(cpu_us)
                print(
                    f"{name:8s} {point.req_per_s:9.0f} req/s  server CPU {cpu_us:6.1f} us/req  "
                    f"p50 {point.p50_ms:6.2f} ms  p99 {point.p99_ms:6.2f} ms  "
                    f"other CPU {point.other_cpu_pct:4.0f}%",
                    flush=True,
                )
            order.reverse()
    bare, gateway = (statistics.median(results[n]) for n in ("bare", "gateway"))
    bare_cpu, gateway_cpu = (statistics.median(cpu_per_request[n]) for n in ("bare", "gateway"))
    print(
        f"median bare {bare:.0f} req/s, gateway {gateway:.0f} req/s: throughput ratio "
        f"{gateway / bare:.3f}; server CPU per request {bare_cpu:.1f} / {gateway_cpu:.1f} us: "
        f"ratio {gateway_cpu / bare_cpu:.3f} ({options.rounds} rounds of {options.duration:g} s, "
        f"{options.connections} connections)"
    )
    paired = [g / b for g, b in zip(results["gateway"], results["bare"], strict=True)]
    paired_cpu = [
        g / b for g, b in zip(cpu_per_request["gateway"], cpu_per_request["bare"], strict=True)
    ]
    print(
        f"per round (each round's two servers measured back to back): throughput ratio median "
        f"{statistics.median(paired):.3f} (range {min(paired):.3f}-{max(paired):.3f}); CPU per "
        f"request ratio median {statistics.median(paired_cpu):.3f}"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""``inferd bench`` against wrk: the same load on the same server, in one run.

One inferd process serves the example's tiny model. For each concurrency (1 and 64 by
default), wrk (one thread) and ``inferd bench`` post the same V2 JSON request for
``--duration`` seconds each, in ABBA order over ``--rounds`` rounds, so that the machine's
drift falls on both. It prints per concurrency the median throughput and latency of each,
the ratio of the medians, and the CPU each generator and the server used (% of one core).

    nice -n 10 python benchmarks/bench_vs_wrk.py --duration 5 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from loadgen import CpuWindow, HttpTarget, _run_measured, write_wrk_script, wrk
from servers import Server, free_port, http_ok

from inferd.client.codec import encode_request, tensors
from inferd.example import build_example

HERE = Path(__file__).resolve().parent


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds per concurrency")
    parser.add_argument("--concurrency", default="1,64")
    return parser.parse_args()


def run_wrk(script: Path, url: str, n: int, duration: float, server: Server) -> dict[str, Any]:
    summary, cpu = wrk(script, url, n, duration, server)
    seconds = summary["duration_us"] / 1e6
    return {
        "req_s": (summary["requests"] - summary["status_errors"]) / seconds,
        "p50_ms": summary["p50_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
        "errors": summary["status_errors"] + summary["socket_errors"],
        "generator_cpu": cpu.generator,
        "server_cpu": cpu.server,
        "other_cpu": cpu.other,
    }


def run_bench(base: str, n: int, duration: float, server: Server) -> dict[str, Any]:
    command = [sys.executable, "-m", "inferd", "bench", base, "--model", "tiny"]
    command += ["--concurrency", str(n), "--duration", str(duration), "--warmup", "0", "--json"]
    window = CpuWindow(server)
    run = _run_measured(command, timeout=duration + 60)
    cpu = window.close(run.cpu_s)
    line = next(x for x in run.output.splitlines() if x.startswith("[{"))
    (step,) = json.loads(line)
    return {
        "req_s": step["throughput"],
        "p50_ms": step["p50_ms"],
        "p99_ms": step["p99_ms"],
        "errors": step["errors"],
        "generator_cpu": cpu.generator,  # the whole process: start-up and the first request too
        "server_cpu": cpu.server,
        "other_cpu": cpu.other,
    }


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def main() -> int:
    args = parse()
    levels = [int(x) for x in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-vs-wrk-"))
    try:
        build_example(work / "example", with_tensorflow=False)
        repo = work / "repo"
        shutil.copytree(work / "example" / "tiny", repo / "tiny")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "inferd", "serve", str(repo), "--port", str(port)]
        server = Server(
            "inferd", [*command, "--grpc-port", "0", "--log-level", "warning"], work / "server.log"
        )
        try:
            server.wait_until(lambda: http_ok(f"{base}/ready"))
            url = f"{base}/v2/models/tiny/infer"
            body, headers = encode_request(
                tensors({"input": np.zeros((1, 4), np.float32)}), None, binary=False
            )
            script = write_wrk_script(HttpTarget(url, body, headers), work / "wrk")
            run_wrk(script, url, 64, 2, server)  # warm-up
            rows = []
            for n in levels:
                runs: dict[str, list[dict[str, Any]]] = {"wrk": [], "bench": []}
                for _ in range(args.rounds):
                    for who in ("wrk", "bench", "bench", "wrk"):
                        result = (
                            run_wrk(script, url, n, args.duration, server)
                            if who == "wrk"
                            else run_bench(base, n, args.duration, server)
                        )
                        runs[who].append(result)
                        print(f"c={n} {who}: {json.dumps(result)}", file=sys.stderr)
                rows.append((n, runs))
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        "| connections | generator | req/s (median) | p50 ms | p99 ms | errors | generator CPU % "
        "| server CPU % | other CPU % | inferd bench / wrk |"
    )
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for n, runs in rows:
        ratio = median(runs["bench"], "req_s") / median(runs["wrk"], "req_s")
        for who in ("wrk", "bench"):
            r = runs[who]
            print(
                f"| {n} | {'wrk' if who == 'wrk' else 'inferd bench'} | {median(r, 'req_s'):,.0f} "
                f"| {median(r, 'p50_ms'):.2f} | {median(r, 'p99_ms'):.2f} "
                f"| {sum(x['errors'] for x in r)} | {median(r, 'generator_cpu'):.0f} "
                f"| {median(r, 'server_cpu'):.0f} | {median(r, 'other_cpu'):.0f} | {ratio:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

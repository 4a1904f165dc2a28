"""Shadow traffic's cost to the primary: the wide model with a shadow at 20 % against none.

One inferd serves two copies of the wide model (256 -> 2048 -> 2048 -> 16, ONNX), each with
two versions; version 2 answers (the primary), version 1 has other weights:

- ``wide``: no shadow;
- ``wide_shadow``: ``shadow: {version: "1", fraction: 0.2, max_in_flight: 64}`` (every
  mirrored request disagrees, so the ring of examples is written too: the costlier path;
  the bound written out, at its default, so that the sample is not cut by drops).

wrk drives them in turns, ``--rounds`` times each (REST V2 JSON, one row per request), so
that noise from the rest of the machine falls on both; the medians are compared (goal:
throughput and p50 with the shadow within 10 % of without). The shadow's own counts
(mirrored, dropped past its bound) come from ``GET /v2/models/wide_shadow/shadow``. Writes
its section of RESULTS.md (``--results``).

Usage: ``python benchmarks/shadow.py [--seconds 5] [--rounds 3] [--connections 32]``
(``make bench-shadow``). Needs wrk (``benchmarks/install-tools.sh``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from benchmarks.loadgen import HttpTarget, Measurement, measure_http, write_wrk_script  # noqa: E402
from benchmarks.scaleout import body, cpu_ms, write_section  # noqa: E402
from benchmarks.servers import Server, free_port  # noqa: E402
from inferd.example import WIDE, mlp_weights, tensor_yaml, write_onnx  # noqa: E402

RESULTS = HERE / "RESULTS.md"
BEGIN = "<!-- shadow:begin -->"
END = "<!-- shadow:end -->"
TOKEN = "bench-admin-token"
FRACTION = 0.2
#: High enough that (almost) no sampled answer is dropped: the cost of the full 20 %.
MAX_IN_FLIGHT = 64


def repository(root: Path) -> Path:
    primary, other = mlp_weights(WIDE, seed=1), mlp_weights(WIDE, seed=2)
    shadowed = {"version": "1", "fraction": FRACTION, "max_in_flight": MAX_IN_FLIGHT}
    for name, shadow in (("wide", None), ("wide_shadow", shadowed)):
        write_onnx(other, root / name / "1" / "model.onnx")
        write_onnx(primary, root / name / "2" / "model.onnx")
        extra: dict[str, Any] = {"max_batch_size": 64, "version_policy": {"all": True}}
        if shadow is not None:
            extra["shadow"] = shadow
        (root / name / "model.yaml").write_text(tensor_yaml(WIDE, "onnx", **extra))
    return root


def start(repo: Path, folder: Path) -> tuple[Server, str]:
    port = free_port()
    command = [sys.executable, "-m", "inferd", "serve", str(repo), f"--port={port}"]
    command += ["--grpc-port=0", "--log-level=warning", f"--admin-token={TOKEN}"]
    for name in [k for k in os.environ if k.startswith("INFERENCE_")]:
        del os.environ[name]
    os.environ["PYTHONPATH"] = str(ROOT / "src")
    server = Server("inferd", command, folder / "inferd.log")
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    server.wait_until(ready)
    return server, url


def shadow_counts(url: str) -> dict[str, int]:
    answer = httpx.get(
        f"{url}/v2/models/wide_shadow/shadow", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    answer.raise_for_status()
    counts: dict[str, int] = answer.json()["shadow"]["counts"]
    return counts


def run(args: argparse.Namespace, folder: Path) -> tuple[str, bool]:
    repo = repository(folder / "models")
    server, url = start(repo, folder)
    labels = {"wide": "shadow off", "wide_shadow": f"shadow at {FRACTION:.0%}"}
    points: dict[str, list[Measurement]] = {name: [] for name in labels}
    try:
        scripts = {}
        for name in labels:
            target = HttpTarget(
                f"{url}/v2/models/{name}/infer", body(), {"Content-Type": "application/json"}
            )
            scripts[name] = write_wrk_script(target, folder / name)
            measure_http(
                "wide", labels[name], scripts[name], target.url, args.connections, 1, server
            )
        before = shadow_counts(url)
        for _ in range(args.rounds):
            for name in labels:
                measured = measure_http(
                    "wide",
                    labels[name],
                    scripts[name],
                    f"{url}/v2/models/{name}/infer",
                    args.connections,
                    args.seconds,
                    server,
                )
                points[name].append(measured)
                print(row(measured), flush=True)
        after = shadow_counts(url)
    finally:
        server.stop()
    counts = {k: after[k] - before[k] for k in after}
    off, on = (points[name] for name in labels)
    rate_off = statistics.median(m.req_per_s for m in off)
    rate_on = statistics.median(m.req_per_s for m in on)
    p50_off = statistics.median(m.p50_ms for m in off)
    p50_on = statistics.median(m.p50_ms for m in on)
    throughput, latency = rate_on / rate_off, p50_on / p50_off
    met = throughput >= 0.9 and latency <= 1.1
    answered = sum(m.requests for m in on)
    mirrored = counts["agree"] + counts["disagree"] + counts["error"]
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Shadow traffic's cost to the primary (`benchmarks/shadow.py`)",
        "",
        f"- {now}, inferd at `{commit}`, {os.cpu_count()} cores; command: "
        f"`python benchmarks/shadow.py --seconds {args.seconds:g} --rounds {args.rounds} "
        f"--connections {args.connections}`.",
        f"- wide (ONNX), REST V2 JSON, one row per request, wrk with {args.connections} "
        f"keep-alive connections, {args.rounds} rounds of {args.seconds:g} s per setup in turns "
        "after a 1 s warm-up each; one server, the two models side by side (the one not "
        "measured is idle). 'server CPU' is the inferd process, in % of one core.",
        "",
        "| setup | req/s | p50 ms | p99 ms | server CPU % | server CPU ms/req | wrk CPU % "
        "| other CPU % | errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        *(row(m) for pair in zip(off, on, strict=True) for m in pair),
        "",
        f"- Shadow at {FRACTION:.0%} / off, medians: throughput **{throughput:.3f}x**, p50 "
        f"**{latency:.3f}x** (goal: within 10 %, i.e. >= 0.9x and <= 1.1x: "
        f"{'met' if met else 'missed'}).",
        f"- Of {answered:,} answers with the shadow on, {mirrored:,} were mirrored "
        f"({mirrored / max(answered, 1):.1%}; agree {counts['agree']:,}, disagree "
        f"{counts['disagree']:,}, error {counts['error']:,}) and {counts['dropped']:,} sampled "
        f"ones dropped past the shadow's bound (`max_in_flight` {MAX_IN_FLIGHT}, the default; "
        "or its version's full queue).",
        END,
    ]
    return "\n".join(lines), met


def row(m: Measurement) -> str:
    return (
        f"| {m.contestant} | {m.req_per_s:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | "
        f"{m.server_cpu_pct:.0f} | {cpu_ms(m):.3f} | {m.generator_cpu_pct:.0f} | "
        f"{m.other_cpu_pct:.0f} | {m.errors} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per setup")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="the file whose section is written"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferd-shadow-") as folder:
        section, _ = run(args, Path(folder))
    write_section(section, args.results, BEGIN, END)
    print(section)


if __name__ == "__main__":
    main()

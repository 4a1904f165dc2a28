"""``make bench``: inferd's hot path against its reference points, interleaved.

Every contestant serves at once (idle ones cost nothing), and the points are measured in
rounds, A B C ... then A B C ... again, so a machine whose speed drifts within the run
moves every contestant alike. Each point is the median of its rounds, with min-max shown.

Contestants (tiny: 4 -> 64 -> 2, wide: 256 -> 2048 -> 2048 -> 16, TorchScript, one
intra-op thread everywhere):

- the HTTP floor: bare ASGI that parses the body with orjson, on uvicorn (httptools,
  uvloop) and on granian, the two stacks a user could pick;
- naive: FastAPI + pydantic + torch, the model run inline;
- the release: inferd at ``RELEASE`` (a git worktree of this repository, run with this
  venv), so a regression against it shows;
- inferd as it is, every optional feature off; and a second inferd with API keys, rate
  limits, the prediction cache (misses: every request another input), a 90/10 split and
  the access log all on, compared with the first on the same varying requests;
- the model alone, in-process, at batch 64 (the wide model's limit in rows/s) and at
  batch 32 (what the batches of 64 connections reach; not a target).

HTTP load: wrk (one thread). gRPC load: h2load (``nghttp2-client``) with pre-framed
``ModelInfer`` bodies, 4 connections x 16 streams; every answer is counted against the
server's statistics afterwards, so a gRPC error (HTTP 200 with a grpc-status trailer)
cannot pass for an answer.

    .venv/bin/python benchmarks/hotpath.py                    # -> RESULTS.md's section
    .venv/bin/python benchmarks/hotpath.py --duration 2 --rounds 1 --output out/x.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
from artifacts import Payloads, build_repository, payloads, served_name
from contestants import JSON
from limit import measure as measure_limit
from loadgen import (
    WRK_DONE,
    WRK_MARK,
    CpuShares,
    CpuWindow,
    HttpTarget,
    _run_measured,
    write_wrk_script,
    wrk,
)
from pyload import infer_request, server_ready
from servers import Server, free_port, http_ok, post

HERE: Final = Path(__file__).resolve().parent
ROOT: Final = HERE.parent
OUT: Final = HERE / "out"
RESULTS: Final = HERE / "RESULTS.md"
RELEASE: Final = "263087c"
BEGIN: Final = "<!-- hotpath:begin -->"
END: Final = "<!-- hotpath:end -->"
TINY: Final = served_name("tiny", "torchscript")
WIDE: Final = served_name("wide", "torchscript")
#: h2load's shape of 64 concurrent streams.
H2_CONNECTIONS: Final = 4
H2_STREAMS: Final = 16

#: wrk's script for requests that each carry another input (cache misses): a counter, and
#: the second at which wrk started, so that no run repeats an input of an earlier one
#: (both are whole numbers below 2**24, which FP32 holds exactly).
VARYING_LUA: Final = (
    """\
wrk.method = "POST"
{headers}
local n = 0
local run = os.time() % 16777216
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil,
    '{{"inputs":[{{"name":"input","shape":[1,4],"datatype":"FP32","data":[' .. n .. ',' .. run
    .. ',3,4]}}]}}')
end
"""
    + WRK_DONE
)


@dataclasses.dataclass
class Result:
    """One round of one point."""

    rate: float  # requests (= rows) per second
    p50_ms: float
    errors: int
    cpu: CpuShares | None = None


@dataclasses.dataclass
class Point:
    label: str
    run: Callable[[float], Result]
    results: list[Result] = dataclasses.field(default_factory=list)

    def median(self) -> float:
        return statistics.median(r.rate for r in self.results)

    def p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.results)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- contestants -----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def start(name: str, command: list[str], ready: Callable[[], bool], env: dict[str, str]) -> Server:
    server = Server(name, command, OUT / "logs" / f"hotpath-{name}.log", env)
    server.wait_until(ready)
    return server


def release_tree(work: Path, release: str) -> Path:
    """A worktree of the release, for its source (run with this venv)."""
    tree = work / f"inferd-{release}"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(tree), release],
        check=True,
        capture_output=True,
    )
    return tree


def inferd_command(
    source: Path, repository: Path, port: int, grpc_port: int, config: Path | None
) -> list[str]:
    command = [sys.executable, "-m", "inferd", "serve", str(repository)]
    command += [f"--port={port}", f"--grpc-port={grpc_port}", "--log-level=warning"]
    if config is not None:
        command.append(f"--config={config}")
    return command


# -- load generators -------------------------------------------------------------------------


def http_point(
    label: str, server: Server, target: HttpTarget, connections: int, work: Path
) -> Point:
    script = write_wrk_script(target, work / "wrk")
    return Point(label, lambda seconds: _wrk(script, target.url, connections, seconds, server))


def varying_point(
    label: str, server: Server, url: str, headers: dict[str, str], work: Path
) -> Point:
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in {**JSON, **headers}.items())
    script = work / f"varying-{server.name}.lua"
    script.write_text(VARYING_LUA.format(headers=lines, mark=WRK_MARK))
    return Point(label, lambda seconds: _wrk(script, url, 64, seconds, server))


def _wrk(script: Path, url: str, connections: int, seconds: float, server: Server) -> Result:
    summary, cpu = wrk(script, url, connections, seconds, server)
    answered = summary["requests"] - summary["status_errors"]
    errors = summary["status_errors"] + summary["socket_errors"]
    return Result(answered / (summary["duration_us"] / 1e6), summary["p50_us"] / 1000, errors, cpu)


def grpc_body(model: str, row: np.ndarray[Any, Any], folder: Path) -> Path:
    """A ModelInfer request, framed as gRPC frames it (no compression, 4-byte length)."""
    message = infer_request(model, row).SerializeToString()
    path = folder / f"{model}.grpc"
    path.write_bytes(struct.pack(">BI", 0, len(message)) + message)
    return path


def grpc_point(
    label: str, server: Server, address: str, base: str, model: str, body: Path
) -> Point:
    def run(seconds: float) -> Result:
        before = _successes(base, model)
        command = [
            "h2load",
            f"http://{address}/inference.GRPCInferenceService/ModelInfer",
            "-d",
            str(body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "-c",
            str(H2_CONNECTIONS),
            "-m",
            str(H2_STREAMS),
            "-t",
            "1",
            "-D",
            f"{max(seconds, 1):.0f}",
        ]
        window = CpuWindow(server)
        measured = _run_measured(command, timeout=seconds + 60)
        cpu = window.close(measured.cpu_s)
        answered = _successes(base, model) - before
        done = re.search(
            r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", measured.output
        )
        took = re.search(r"finished in ([\d.]+)(ms|s)", measured.output)
        mean = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", measured.output)
        if done is None or took is None:
            raise RuntimeError(f"h2load printed no summary:\n{measured.output}")
        sent = int(done.group(2))
        wall = float(took.group(1)) / (1000 if took.group(2) == "ms" else 1)
        # Answers the server counted as successes in the window (not only HTTP 200s).
        errors = max(sent - answered, 0)
        p50 = _ms(mean) if mean else float("nan")
        return Result(min(answered, sent) / wall, p50, errors, cpu)

    return Point(label, run)


def _ms(match: re.Match[str]) -> float:
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _successes(base: str, model: str) -> int:
    _, body, _ = post_get(f"{base}/v2/models/{model}/stats")
    stats = json.loads(body)["model_stats"]
    return sum(s["inference_stats"]["success"]["count"] for s in stats)


def post_get(url: str) -> tuple[int, bytes, dict[str, str]]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read(), dict(answer.headers)


def limit_point(label: str, artifact: Path, data: Payloads, batch: int) -> Point:
    def run(seconds: float) -> Result:
        (result,) = measure_limit(
            "torchscript", artifact, data.row, data.expected, (batch,), seconds
        )
        return Result(result.rows_per_s, result.p50_ms, 0)

    return Point(label, run)


# -- the run ---------------------------------------------------------------------------------


FEATURES_YAML: Final = """\
server:
  require_api_key: true
  api_keys: ["bench:infer:{digest}"]
  access_log: plain
safeguards:
  rate_limit:
    enabled: true
    requests_per_minute: 1000000000
"""
KEY: Final = "hot-path-benchmark-key-0123456789abcdef"


#: What model.yaml adds for a 90/10 split (both versions served) and for the cache.
SPLIT_YAML: Final = "version_policy: {all: true}\ntraffic:\n  '1': 90\n  '2': 10\n"
CACHE_YAML: Final = "cache:\n  enabled: true\n"


def tiny_repository(base: Path, root: Path, added: str) -> Path:
    """The tiny model alone, with ``added`` in its model.yaml (and a second version, the
    same files, when it splits traffic)."""
    repo = root / "features"
    model = repo / TINY
    shutil.copytree(base / TINY, model)
    if "traffic" in added:
        shutil.copytree(model / "1", model / "2")
    (model / "model.yaml").write_text((model / "model.yaml").read_text() + added)
    return repo


def features_repository(base: Path, root: Path) -> Path:
    """The tiny model with two versions at 90/10 (both served) and its cache on."""
    return tiny_repository(base, root, SPLIT_YAML + CACHE_YAML)


def release_site() -> Path:
    """The packages the release needs that this venv's differ from: its generated gRPC
    modules want protobuf 7 (this venv may hold 6, which kserve's SDK pins), installed
    once into a folder put first on the release's path."""
    site = OUT / "release-site"
    marker = site / ".installed"
    if not marker.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(site),
                "protobuf>=7.35,<8",
            ],
            check=True,
        )
        marker.touch()
    return site


def build(args: argparse.Namespace, work: Path, servers: list[Server]) -> list[Point]:
    import hashlib

    OUT.mkdir(exist_ok=True)
    repo = work / "models"
    artifacts = build_repository(repo, ["tiny", "wide"], max_batch_size=64)
    tiny, wide = payloads("tiny"), payloads("wide")
    env = _env()

    def serve(name: str, command: list[str], ready: Callable[[], bool], **extra: str) -> Server:
        log(f"starting {name}")
        server = start(name, command, ready, {**env, **extra})
        servers.append(server)
        return server

    ports = {
        name: free_port() for name in ("floor", "granian", "naive", "release", "inferd", "features")
    }
    grpc_ports = {name: free_port() for name in ("release", "inferd", "features")}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    floor = serve(
        "floor",
        [sys.executable, str(HERE / "floor_app.py"), f"--port={ports['floor']}"],
        lambda: http_ok(url["floor"]),
    )
    granian = serve(
        "granian",
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["granian"]),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--log-level",
            "warning",
            "--no-ws",
            "floor_app:app",
        ],
        lambda: http_ok(url["granian"]),
        PYTHONPATH=str(HERE),
    )
    naive = serve(
        "naive",
        [
            sys.executable,
            str(HERE / "naive_app.py"),
            str(artifacts[TINY]),
            f"--port={ports['naive']}",
        ],
        lambda: http_ok(f"{url['naive']}/docs"),
    )
    release_src = release_tree(work, args.release) / "src"
    release = serve(
        "release",
        inferd_command(release_src, repo, ports["release"], grpc_ports["release"], None),
        lambda: http_ok(f"{url['release']}/ready"),
        PYTHONPATH=f"{release_site()}:{release_src}",
    )
    inferd = serve(
        "inferd",
        inferd_command(ROOT / "src", repo, ports["inferd"], grpc_ports["inferd"], None),
        lambda: http_ok(f"{url['inferd']}/ready"),
        PYTHONPATH=str(ROOT / "src"),
    )
    config = work / "features.yaml"
    config.write_text(FEATURES_YAML.format(digest=hashlib.sha256(KEY.encode()).hexdigest()))
    features = serve(
        "features",
        inferd_command(
            ROOT / "src",
            features_repository(repo, work),
            ports["features"],
            grpc_ports["features"],
            config,
        ),
        lambda: http_ok(f"{url['features']}/ready"),
        PYTHONPATH=str(ROOT / "src"),
    )
    grpc_address = f"127.0.0.1:{grpc_ports['inferd']}"
    inferd.wait_until(lambda: server_ready(grpc_address), timeout=30)

    def v2(base: str, model: str, data: Payloads, binary: bool = False) -> HttpTarget:
        if not binary:
            return HttpTarget(f"{base}/v2/models/{model}/infer", data.v2_json, JSON)
        headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(data.v2_binary_header_length),
        }
        return HttpTarget(f"{base}/v2/models/{model}/infer", data.v2_binary, headers)

    _check(v2(url["inferd"], TINY, tiny), tiny.expected)
    _check(v2(url["release"], TINY, tiny), tiny.expected)
    key = {"X-API-Key": KEY}
    check = HttpTarget(f"{url['features']}/v2/models/{TINY}/infer", tiny.v2_json, {**JSON, **key})
    _check(check, tiny.expected)
    floor_target = HttpTarget(f"{url['floor']}/", tiny.v2_json, JSON)
    granian_target = HttpTarget(f"{url['granian']}/", tiny.v2_json, JSON)
    naive_target = HttpTarget(f"{url['naive']}/predict", tiny.simple_json, JSON)
    predict = HttpTarget(f"{url['inferd']}/models/{TINY}/predict", tiny.simple_json, JSON)
    bodies = work / "grpc"
    bodies.mkdir()
    base = url["inferd"]
    points = [
        http_point("floor (uvicorn) c=1", floor, floor_target, 1, work),
        http_point("floor (uvicorn) c=64", floor, floor_target, 64, work),
        http_point("floor (granian) c=1", granian, granian_target, 1, work),
        http_point("floor (granian) c=64", granian, granian_target, 64, work),
        http_point("naive c=1", naive, naive_target, 1, work),
        http_point("naive c=64", naive, naive_target, 64, work),
        http_point(
            f"inferd {args.release} tiny JSON c=1", release, v2(url["release"], TINY, tiny), 1, work
        ),
        http_point(
            f"inferd {args.release} tiny JSON c=64",
            release,
            v2(url["release"], TINY, tiny),
            64,
            work,
        ),
        http_point("inferd tiny JSON c=1", inferd, v2(base, TINY, tiny), 1, work),
        http_point("inferd tiny JSON c=64", inferd, v2(base, TINY, tiny), 64, work),
        http_point("inferd tiny /predict c=64", inferd, predict, 64, work),
        http_point("inferd tiny binary c=64", inferd, v2(base, TINY, tiny, binary=True), 64, work),
        grpc_point(
            "inferd tiny gRPC 64 streams",
            inferd,
            grpc_address,
            base,
            TINY,
            grpc_body(TINY, tiny.row, bodies),
        ),
        http_point("inferd wide binary c=64", inferd, v2(base, WIDE, wide, binary=True), 64, work),
        grpc_point(
            "inferd wide gRPC 64 streams",
            inferd,
            grpc_address,
            base,
            WIDE,
            grpc_body(WIDE, wide.row, bodies),
        ),
        limit_point("wide model alone, batch 64", artifacts[WIDE], wide, 64),
        # What 64 connections' batches can reach: they form two groups of about 32 rows
        # that take turns (docs/performance.md, round 7).
        limit_point("wide model alone, batch 32", artifacts[WIDE], wide, 32),
        varying_point(
            "inferd tiny JSON c=64, features off (varying inputs)",
            inferd,
            f"{base}/v2/models/{TINY}/infer",
            {},
            work,
        ),
        varying_point(
            "inferd tiny JSON c=64, features on (varying inputs)",
            features,
            f"{url['features']}/v2/models/{TINY}/infer",
            key,
            work,
        ),
    ]
    return points


def _check(target: HttpTarget, expected: np.ndarray[Any, Any]) -> None:
    status, body, _ = post(target.url, target.body, target.headers)
    if status != 200:
        raise RuntimeError(f"{target.url} answered {status}: {body[:300]!r}")
    got = np.asarray(json.loads(body)["outputs"][0]["data"], dtype=np.float32)
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
        raise RuntimeError(f"{target.url} answered {got}, the reference is {expected}")


def run(args: argparse.Namespace) -> str:
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="inferd-hotpath-") as folder:
        work = Path(folder)
        servers: list[Server] = []
        try:
            points = build(args, work, servers)
            for point in points:  # warm-up, not counted
                point.run(1.0)
            for round_ in range(1, args.rounds + 1):
                for point in points:
                    result = point.run(args.duration)
                    point.results.append(result)
                    log(
                        f"round {round_}: {point.label}: {result.rate:,.0f}/s "
                        f"p50 {result.p50_ms:.2f} ms, {result.errors} errors"
                    )
        finally:
            for server in servers:
                server.stop()
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)
    return report(points, args, time.time() - started)


def report(points: list[Point], args: argparse.Namespace, took: float) -> str:
    by = {p.label: p for p in points}

    def ratio(a: str, b: str) -> float:
        return by[a].median() / by[b].median()

    rel = args.release
    targets = [
        (
            "tiny JSON c=64: inferd / floor (uvicorn)",
            ratio("inferd tiny JSON c=64", "floor (uvicorn) c=64"),
            ">= 0.4x",
        ),
        ("tiny JSON c=64: inferd / naive", ratio("inferd tiny JSON c=64", "naive c=64"), ">= 3x"),
        (
            f"tiny JSON c=64: inferd / inferd {rel}",
            ratio("inferd tiny JSON c=64", f"inferd {rel} tiny JSON c=64"),
            ">= 1.5x",
        ),
        (
            "tiny JSON c=1: inferd / naive (throughput)",
            ratio("inferd tiny JSON c=1", "naive c=1"),
            ">= 1x",
        ),
        (
            "tiny JSON c=1: inferd p50 / naive p50",
            by["inferd tiny JSON c=1"].p50() / by["naive c=1"].p50(),
            "<= 1x",
        ),
        (
            "wide binary c=64: inferd rows/s / model alone at batch 64",
            ratio("inferd wide binary c=64", "wide model alone, batch 64"),
            ">= 0.8x",
        ),
        (
            "wide gRPC 64 streams: inferd rows/s / model alone at batch 64",
            ratio("inferd wide gRPC 64 streams", "wide model alone, batch 64"),
            ">= 0.8x",
        ),
        (
            "tiny gRPC 64 streams (h2load) / tiny REST binary c=64",
            ratio("inferd tiny gRPC 64 streams", "inferd tiny binary c=64"),
            ">= 1x",
        ),
        (
            "tiny JSON c=64, features on / off",
            ratio(
                "inferd tiny JSON c=64, features on (varying inputs)",
                "inferd tiny JSON c=64, features off (varying inputs)",
            ),
            ">= 0.8x",
        ),
    ]
    lines = [
        BEGIN,
        "## Hot path (`make bench`)",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; took {took / 60:.1f} min."
        f" inferd at `{_commit()}`; the release is `{args.release}`.",
        f"- Command: `{args.command}`. {args.rounds} rounds of {args.duration:g} s per point,"
        " points interleaved (every point once per round, in the table's order); each cell is"
        " the median of the rounds, min-max after it.",
        "- Every server runs at once on loopback; wrk (1 thread) for HTTP, h2load (4 connections"
        " x 16 streams, pre-framed ModelInfer bodies) for gRPC. One intra-op thread everywhere."
        " Machine: " + f"{os.cpu_count()} cores; other processes' CPU is shown per point.",
        "",
        "| target | measured | goal | verdict |",
        "|---|--:|---|---|",
    ]
    for name, value, goal in targets:
        bound = float(goal.split()[1].rstrip("x"))
        ok = value >= bound if goal.startswith(">=") else value <= bound
        lines.append(f"| {name} | {value:.2f}x | {goal} | {'PASS' if ok else '**MISS**'} |")
    batch32 = ratio("wide model alone, batch 32", "wide model alone, batch 64")
    served = ratio("inferd wide binary c=64", "wide model alone, batch 32")
    lines += [
        "",
        f"Not a target: the wide model alone at batch 32 (the batches 64 connections form) runs"
        f" at {batch32:.2f}x its rows/s at batch 64, and inferd's wide binary point reaches"
        f" {served:.2f}x of it (docs/performance.md, round 7).",
        "",
        "| point | req/s (rows/s), median | min-max | p50 ms | errors | server CPU % | other CPU % |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for point in points:
        rates = [r.rate for r in point.results]
        cpus = [r.cpu for r in point.results if r.cpu is not None]
        server = f"{statistics.median(c.server for c in cpus):.0f}" if cpus else "-"
        other = f"{statistics.median(c.other for c in cpus):.0f}" if cpus else "-"
        lines.append(
            f"| {point.label} | {point.median():,.0f} | {min(rates):,.0f}-{max(rates):,.0f} | "
            f"{point.p50():.2f} | {sum(r.errors for r in point.results)} | {server} | {other} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def _commit() -> str:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "src"], capture_output=True, text=True
    ).stdout.strip()
    return head + ("-dirty" if dirty else "")


def write_section(section: str, results: Path) -> None:
    text = results.read_text() if results.exists() else ""
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        # The hot path's table leads the file: it is what `make bench` measures.
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{section}\n\n{rest.lstrip()}" if text else section + "\n"
    results.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per point")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--release",
        default=RELEASE,
        help="the commit run as the release contestant (another commit: a before/after run)",
    )
    args = parser.parse_args()
    args.command = shlex.join(["benchmarks/hotpath.py", *sys.argv[1:]])
    if shutil.which("h2load") is None or shutil.which("wrk") is None:
        raise SystemExit("wrk and h2load are needed: bash benchmarks/install-tools.sh")
    section = run(args)
    write_section(section, args.output)
    print(section)


if __name__ == "__main__":
    main()

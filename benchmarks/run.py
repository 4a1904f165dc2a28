"""inferd's benchmark suite: the limit, the HTTP floor, a naive endpoint and inferd, in one
run on one machine, every contestant serving the same model files.

    .venv/bin/python benchmarks/run.py            # the full run -> benchmarks/RESULTS.md
    .venv/bin/python benchmarks/run.py --quick    # a smoke run -> benchmarks/out/
    .venv/bin/python benchmarks/run.py --profile  # py-spy on inferd under load

Contestants, for the ``tiny`` (4 -> 64 -> 2) and ``wide`` (256 -> 2048 -> 2048 -> 16) MLPs:
(a) the model alone, in-process, at batch 1, 8, 32 and 64; (b) a bare ASGI app that parses
the body and answers fixed JSON; (c) ``naive_app.py``; (d) inferd over REST JSON,
``/predict``, REST binary, gRPC and WebSocket. One intra-op thread everywhere. Servers run one at a
time; wrk (one thread, loopback) and ``pyload.py`` (gRPC, WebSocket) generate the load.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import shlex
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
from artifacts import MODELS, Payloads, build_repository, payloads, served_name
from contestants import GRPC, WEBSOCKET, HttpContestant, floor, inferd_http, inferd_label, naive
from limit import measure as measure_limit
from loadgen import Measurement, PyTarget, measure_http, measure_py, write_wrk_script
from pyload import infer_once, server_ready, ws_infer_once
from report import Results, write_report
from servers import Server, free_port, http_ok, post, running

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RUNTIMES = ("torchscript", "onnx")
BATCH_SIZES = (1, 8, 32, 64)


@dataclasses.dataclass(frozen=True)
class Options:
    models: tuple[str, ...]
    concurrency: tuple[int, ...]
    duration: float
    warmup: float
    limit_seconds: float
    max_batch_size: int
    batch_delay_ms: float
    output: Path
    command: str


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, help="seconds per point (default 8; quick 1)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per contestant")
    parser.add_argument("--concurrency", type=_ints, default=(1, 16, 64), help="e.g. 1,16,64")
    parser.add_argument("--models", default="tiny,wide", help="comma-separated: tiny,wide")
    parser.add_argument("--max-batch-size", type=int, default=64, help="inferd's per model")
    parser.add_argument("--batch-delay-ms", type=float, default=0.0, help="inferd's queue delay")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--output", type=Path, help="the report (default RESULTS.md; quick: out/)")
    parser.add_argument("--profile", action="store_true", help="profile inferd with py-spy")
    args = parser.parse_args(argv)
    models = tuple(args.models.split(","))
    unknown = set(models) - MODELS.keys()
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; expected some of {sorted(MODELS)}")
    quick = args.quick
    default_output = OUT / "RESULTS-quick.md" if quick else HERE / "RESULTS.md"
    options = Options(
        models=models,
        concurrency=args.concurrency,
        duration=args.duration or (1.0 if quick else 8.0),
        warmup=args.warmup if args.warmup is not None else (0.5 if quick else 2.0),
        limit_seconds=0.3 if quick else 1.5,
        max_batch_size=args.max_batch_size,
        batch_delay_ms=args.batch_delay_ms,
        output=args.output or default_output,
        command=shlex.join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
    )
    return args, options


class Suite:
    def __init__(self, options: Options, results: Results, work: Path) -> None:
        self.options = options
        self.results = results
        self.work = work
        self.payloads: dict[str, Payloads] = {m: payloads(m) for m in options.models}
        self.artifacts = build_repository(
            work / "models", list(options.models), options.max_batch_size
        )

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def run(self) -> None:
        self.model_alone()
        self.floor()
        self.naive()
        self.inferd()

    # -- (a) the limit --------------------------------------------------------------------

    def model_alone(self) -> None:
        for model in self.options.models:
            data = self.payloads[model]
            for runtime in RUNTIMES:
                self.log(f"model alone: {model} {runtime}")
                self.results.limits[(model, runtime)] = measure_limit(
                    runtime,
                    self.artifacts[served_name(model, runtime)],
                    data.row,
                    data.expected,
                    BATCH_SIZES,
                    self.options.limit_seconds,
                )

    # -- (b) the HTTP floor ---------------------------------------------------------------

    def floor(self) -> None:
        port = free_port()
        command = [sys.executable, str(HERE / "floor_app.py"), f"--port={port}"]
        base = f"http://127.0.0.1:{port}"
        with running("floor", command, OUT / "logs" / "floor.log", lambda: http_ok(base)) as srv:
            for model in self.options.models:
                self.load_http(model, floor(base, self.payloads[model]), srv)

    # -- (c) the naive endpoint -----------------------------------------------------------

    def naive(self) -> None:
        for model in self.options.models:
            port = free_port()
            artifact = self.artifacts[served_name(model, "torchscript")]
            command = [sys.executable, str(HERE / "naive_app.py"), str(artifact), f"--port={port}"]
            base = f"http://127.0.0.1:{port}"
            log = OUT / "logs" / f"naive-{model}.log"
            with running("naive", command, log, lambda b=base: http_ok(f"{b}/docs")) as srv:
                self.load_http(model, naive(base, self.payloads[model]), srv)

    # -- (d) inferd -----------------------------------------------------------------------

    def inferd(self) -> None:
        port, grpc_port = free_port(), free_port()
        config = self.work / "inferd.yaml"
        # A load generator is the one abuser the per-connection message limit should let by.
        config.write_text("stream:\n  max_messages_per_second: 1000000\n")
        command = [
            str(Path(sys.executable).with_name("inferd")),
            "serve",
            str(self.work / "models"),
            f"--config={config}",
            f"--port={port}",
            f"--grpc-port={grpc_port}",
            "--log-level=warning",
            f"--batch-timeout-ms={self.options.batch_delay_ms}",
        ]
        base = f"http://127.0.0.1:{port}"
        log = OUT / "logs" / "inferd.log"
        with running("inferd", command, log, lambda: http_ok(f"{base}/ready")) as srv:
            grpc_target = self.grpc_available(f"127.0.0.1:{grpc_port}", srv)
            for model in self.options.models:
                for runtime in RUNTIMES:
                    stats = f"{base}/v2/models/{served_name(model, runtime)}/stats"
                    for contestant in inferd_http(base, model, runtime, self.payloads[model]):
                        self.load_http(model, contestant, srv, stats)
                    if grpc_target is not None:
                        self.load_py(
                            model, runtime, PyTarget("grpc", grpc_target, "", b""), srv, stats
                        )
                    ws = PyTarget("ws", f"ws://127.0.0.1:{port}", "", b"")
                    self.load_py(model, runtime, ws, srv, stats)

    def grpc_available(self, address: str, server: Server) -> str | None:
        try:
            importlib.import_module("inferd.grpc.server")
        except ImportError as exc:
            self.results.notes.append(
                f"gRPC rows skipped: `inferd.grpc.server` cannot be imported ({exc})."
            )
            return None
        try:
            server.wait_until(lambda: server_ready(address), timeout=20)
        except RuntimeError:
            self.results.notes.append(
                f"gRPC rows skipped: inferd's gRPC port {address} did not answer ServerReady."
            )
            return None
        return address

    # -- load -----------------------------------------------------------------------------

    def load_http(
        self, model: str, contestant: HttpContestant, server: Server, stats: str | None = None
    ) -> None:
        target = contestant.target
        try:
            contestant.check(
                *post(target.url, target.body, target.headers), self.payloads[model].expected
            )
        except (RuntimeError, OSError) as exc:
            self.skip(model, contestant.label, exc)
            return
        script = write_wrk_script(target, self.work / "wrk")

        def point(concurrency: int, duration: float) -> Measurement:
            return measure_http(
                model, contestant.label, script, target.url, concurrency, duration, server
            )

        self.sweep(model, contestant.label, point, stats)

    def load_py(
        self, model: str, runtime: str, where: PyTarget, server: Server, stats: str
    ) -> None:
        """gRPC or WebSocket load from ``pyload.py``, after one checked answer."""
        label = inferd_label(GRPC if where.protocol == "grpc" else WEBSOCKET, runtime)
        data = self.payloads[model]
        name = served_name(model, runtime)
        try:
            if where.protocol == "grpc":
                got = infer_once(where.address, name, data.row)
            else:
                got = asyncio.run(ws_infer_once(where.address, name, data.row))
            if not np.allclose(got, data.expected, rtol=1e-4, atol=1e-4):
                raise RuntimeError(f"answered {got}, the reference is {data.expected}")
        except Exception as exc:  # any client failure skips the row, with its reason
            self.skip(model, label, exc)
            return
        target = dataclasses.replace(where, model=name, row=data.row.tobytes())

        def point(concurrency: int, duration: float) -> Measurement:
            return measure_py(
                model, label, target, self.work / "py", concurrency, duration, server, warmup=0.5
            )

        self.sweep(model, label, point, stats)

    def sweep(
        self,
        model: str,
        label: str,
        point: Callable[[int, float], Measurement],
        stats: str | None = None,
    ) -> None:
        """Warm up at the highest concurrency, then measure every concurrency. With a
        statistics URL (inferd's), each point also gets the batching it saw."""
        try:
            if self.options.warmup > 0:
                point(max(self.options.concurrency), self.options.warmup)
            for concurrency in self.options.concurrency:
                before = _batching(stats) if stats else None
                measured = point(concurrency, self.options.duration)
                if stats and before:
                    measured = _with_batching(measured, before, _batching(stats))
                self.log(
                    f"{model:5} {label:34} c={concurrency:<3} {measured.req_per_s:9.0f} req/s "
                    f"p50 {measured.p50_ms:7.2f} ms  p99 {measured.p99_ms:7.2f} ms"
                    + (f"  batch {measured.mean_batch:.1f}" if measured.mean_batch else "")
                    + (f"  errors {measured.errors}" if measured.errors else "")
                )
                self.results.measurements.append(measured)
        except (RuntimeError, TimeoutError) as exc:
            self.skip(model, label, exc)

    def skip(self, model: str, label: str, exc: BaseException) -> None:
        self.log(f"{model} {label}: skipped: {exc}")
        self.results.notes.append(f"{model}, {label}: skipped: {exc}")


def _batching(url: str) -> tuple[int, int, int, int, int]:
    """From inferd's Triton-style statistics, so far: rows, executions, model time summed
    over executions (ns), requests queued and their summed queue time (ns)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        doc = json.loads(response.read())["model_stats"][0]
    queue = doc["inference_stats"]["queue"]
    return (
        doc["inference_count"],
        doc["execution_count"],
        sum(b["compute_infer"]["ns"] for b in doc["batch_stats"]),
        queue["count"],
        queue["ns"],
    )


def _with_batching(
    measured: Measurement, before: tuple[int, ...], after: tuple[int, ...]
) -> Measurement:
    rows, executions, infer_ns, queued, queue_ns = (
        b - a for a, b in zip(before, after, strict=True)
    )
    if not executions or not queued:
        return measured
    return dataclasses.replace(
        measured,
        mean_batch=rows / executions,
        model_ms_per_batch=infer_ns / executions / 1e6,
        queue_ms=queue_ns / queued / 1e6,
    )


def main(argv: list[str] | None = None) -> int:
    args, options = parse_args(argv)
    if args.profile:
        from profiling import profile

        return profile(options, OUT / "profile")
    started = time.monotonic()
    results = Results.describe(options)
    with tempfile.TemporaryDirectory(prefix="inferd-bench-") as work:
        Suite(options, results, Path(work)).run()
    results.wall_s = time.monotonic() - started
    write_report(results, options.output)
    print(f"wrote {options.output} in {results.wall_s / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())

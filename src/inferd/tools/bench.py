"""``inferd bench``: load a model at each concurrency for a while, with a live progress
display, then report throughput, p50/p90/p99 latency and errors per concurrency (a table,
``--json`` or ``--csv``) and, with ``--plot``, draw throughput and p99 against concurrency
(matplotlib: ``pip install 'inferd[plot]'``)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from inferd.client import Client
from inferd.client.calls import headers, model_path
from inferd.client.codec import encode_request, tensors
from inferd.errors import ConfigError
from inferd.tools.load import HttpRequest, Tally, grpc_load, http_load
from inferd.tools.target import client_of, grpc_credentials, grpc_target, read_inputs

REFRESH_S = 0.25


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One concurrency's figures."""

    concurrency: int
    seconds: float
    requests: int
    throughput: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    errors: int
    error_kinds: dict[str, int]

    @classmethod
    def of(cls, concurrency: int, seconds: float, tally: Tally) -> Step:
        ms = np.asarray(tally.latencies) * 1000
        p50, p90, p99 = (
            [round(v, 3) for v in np.percentile(ms, [50, 90, 99]).tolist()]
            if ms.size
            else (None,) * 3
        )
        return cls(
            concurrency,
            round(seconds, 3),
            tally.answered,
            round(tally.answered / seconds, 1) if seconds else 0.0,
            p50,
            p90,
            p99,
            sum(tally.errors.values()),
            dict(tally.errors),
        )


def levels(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--concurrency {text!r}: expected numbers like 1,8,64") from None
    if not values or min(values) < 1:
        raise ConfigError(f"--concurrency {text!r}: expected positive numbers like 1,8,64")
    return values


def run(args: argparse.Namespace) -> int:
    concurrency = levels(args.concurrency)
    if args.duration <= 0 or args.warmup < 0:
        raise ConfigError("--duration must be positive and --warmup not negative")
    if args.plot is not None:
        _check_plotting()
    with client_of(args) as client:
        inputs = read_inputs(
            client.model_metadata(args.model, args.version), None, args.data, args.batch
        )
        client.infer(args.model, inputs, version=args.version)  # fails early on a bad request
        load = _loader(args, client, inputs)
    console = Console(stderr=True)
    steps = _run_loop(_steps(load, concurrency, args, console))
    _report(steps, args)
    if args.plot is not None:
        plot(steps, args.plot, f"{args.model} over {args.protocol}")
        console.print(f"wrote {args.plot}")
    return 1 if steps and all(s.requests == 0 for s in steps) else 0


Load = Any  # (connections, seconds, tally) -> awaitable


def _loader(args: argparse.Namespace, client: Client, inputs: dict[str, Any]) -> Load:
    if args.protocol == "grpc":
        metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else []
        target = grpc_target(args)
        credentials = grpc_credentials(args)

        def grpc_run(n: int, seconds: float, tally: Tally) -> Any:
            return grpc_load(
                target, args.model, args.version, inputs, metadata, n, seconds, tally, credentials
            )

        return grpc_run
    body, content = encode_request(tensors(inputs), None, args.binary)
    path = model_path(args.model, args.version, None, "infer")
    tls = ssl.create_default_context(cafile=str(args.ca)) if args.ca else None
    request = HttpRequest.of(
        args.url, path, body, {**headers(client.options, None, None, None), **content}, tls
    )

    def http_run(n: int, seconds: float, tally: Tally) -> Any:
        return http_load(request, n, seconds, tally)

    return http_run


async def _steps(
    load: Load, concurrency: list[int], args: argparse.Namespace, console: Console
) -> list[Step]:
    if args.warmup > 0:
        await _step(load, max(concurrency), args.warmup, console, "warm-up")
    return [await _step(load, n, args.duration, console, f"{n} connections") for n in concurrency]


async def _step(load: Load, n: int, seconds: float, console: Console, title: str) -> Step:
    tally = Tally()
    started = time.perf_counter()
    task = asyncio.ensure_future(load(n, seconds, tally))
    with Live(_progress(title, tally, 0.0, seconds), console=console, transient=True) as live:
        while not task.done():
            await asyncio.wait([task], timeout=REFRESH_S)
            live.update(_progress(title, tally, time.perf_counter() - started, seconds))
    await task
    step = Step.of(n, time.perf_counter() - started, tally)
    if title != "warm-up":
        console.print(_line(step))
    return step


def _progress(title: str, tally: Tally, elapsed: float, seconds: float) -> Table:
    recent = tally.latencies[-2000:]
    p99 = float(np.percentile(recent, 99)) * 1000 if recent else None
    done = min(elapsed / seconds, 1.0) if seconds else 1.0
    bar = "#" * int(done * 30)
    table = Table.grid(padding=(0, 2))
    table.add_row(
        f"[bold]{title}[/]",
        f"[{bar:<30}] {elapsed:4.1f}/{seconds:.0f} s",
        f"{tally.answered} answers",
        f"{tally.answered / elapsed if elapsed else 0:,.0f} req/s",
        f"p99 {p99:.2f} ms" if p99 is not None else "p99 -",
        f"[red]{sum(tally.errors.values())} errors[/]" if tally.errors else "0 errors",
    )
    return table


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _line(step: Step) -> str:
    return (
        f"{step.concurrency:>4} connections: {step.throughput:,.0f} req/s, p50 {_ms(step.p50_ms)} "
        f"p90 {_ms(step.p90_ms)} p99 {_ms(step.p99_ms)} ms, {step.errors} errors"
    )


def _run_loop(main: Any) -> list[Step]:
    """Run on uvloop where it is installed (``uvicorn[standard]`` brings it): the
    generator's own cost is lower there."""
    try:
        import uvloop
    except ImportError:
        result: list[Step] = asyncio.run(main)
        return result
    steps: list[Step] = uvloop.run(main)
    return steps


def _report(steps: list[Step], args: argparse.Namespace) -> None:
    rows = [dataclasses.asdict(s) for s in steps]
    if args.json:
        print(json.dumps(rows))
        return
    if args.csv:
        writer = csv.writer(sys.stdout)
        columns = [f.name for f in dataclasses.fields(Step) if f.name != "error_kinds"]
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row[c] for c in columns])
        return
    table = Table(title=f"{args.model} over {args.protocol}")
    for column in ("concurrency", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors"):
        table.add_column(column, justify="right")
    for s in steps:
        errors = ", ".join(f"{k}: {v}" for k, v in s.error_kinds.items()) or "0"
        table.add_row(
            str(s.concurrency),
            f"{s.throughput:,.0f}",
            _ms(s.p50_ms),
            _ms(s.p90_ms),
            _ms(s.p99_ms),
            errors,
        )
    Console().print(table)


def _check_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'inferd[plot]'") from None


def plot(steps: list[Step], path: Path, title: str) -> None:
    """Throughput and p99 latency against concurrency, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s.concurrency for s in steps]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(x, [s.throughput for s in steps], marker="o")
    left.set(xlabel="concurrency", ylabel="requests/s", title="throughput", xscale="log")
    right.plot(x, [s.p99_ms or 0 for s in steps], marker="o", color="tab:red")
    right.set(xlabel="concurrency", ylabel="ms", title="p99 latency", xscale="log")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

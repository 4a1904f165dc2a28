"""RESULTS.md, the targets, the throughput plot and a JSON dump of every number."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from artifacts import MODELS
from contestants import (
    FLOOR,
    GRPC,
    INFERD_PROTOCOLS,
    NAIVE,
    PREDICT,
    REST_BINARY,
    REST_JSON,
    WEBSOCKET,
    inferd_label,
)
from limit import LimitResult
from loadgen import Measurement

PLOT_NAME = "throughput.png"
#: Plot colours: one per contestant kind; the runtime picks the line style.
COLOURS = {
    FLOOR: "tab:gray",
    NAIVE: "tab:orange",
    REST_JSON: "tab:blue",
    PREDICT: "tab:green",
    REST_BINARY: "tab:purple",
    GRPC: "tab:red",
    WEBSOCKET: "tab:brown",
}


@dataclasses.dataclass
class Results:
    options: Any
    environment: dict[str, str]
    limits: dict[tuple[str, str], list[LimitResult]] = dataclasses.field(default_factory=dict)
    measurements: list[Measurement] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    wall_s: float = 0.0

    @classmethod
    def describe(cls, options: Any) -> Results:
        return cls(options, _environment())

    def point(self, model: str, contestant: str, concurrency: int) -> Measurement | None:
        return next(
            (
                m
                for m in self.measurements
                if (m.model, m.contestant, m.concurrency) == (model, contestant, concurrency)
            ),
            None,
        )

    def limit(self, model: str, runtime: str, batch: int) -> LimitResult | None:
        return next((r for r in self.limits.get((model, runtime), []) if r.batch == batch), None)


def _environment() -> dict[str, str]:
    import numpy
    import onnxruntime
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent,
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "wrk": (wrk.stdout or wrk.stderr).split("[")[0].strip() or "wrk",
        "commit": commit.stdout.strip() or "unknown",
    }


# -- targets ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """One goal of the serving issue: ``value`` against ``bound`` (at least, or at most)."""

    name: str
    value: float | None
    bound: float
    unit: str
    at_least: bool = True

    def row(self) -> str:
        goal = f"{'>=' if self.at_least else '<='} {self.bound:g}{self.unit}"
        if self.value is None:
            return f"| {self.name} | not measured | {goal} | n/a |"
        met = self.value >= self.bound if self.at_least else self.value <= self.bound
        verdict = "PASS" if met else "MISS"
        return f"| {self.name} | {self.value:.2f}{self.unit} | {goal} | **{verdict}** |"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(results: Results, concurrency: int = 64) -> list[Target]:
    def point(model: str, contestant: str, c: int, which: str) -> float | None:
        measured = results.point(model, contestant, c)
        return getattr(measured, which) if measured else None

    def rate(model: str, contestant: str) -> float | None:
        return point(model, contestant, concurrency, "req_per_s")

    c = concurrency
    rows = []
    for runtime in ("torchscript", "onnx"):
        rest = inferd_label(REST_JSON, runtime)
        binary = inferd_label(REST_BINARY, runtime)
        alone = results.limit("wide", runtime, 64)
        single = results.limit("tiny", runtime, 1)
        p50 = point("tiny", rest, 1, "p50_ms")
        added = p50 - single.p50_ms if p50 is not None and single else None
        naive = runtime == "torchscript"  # the naive app serves the TorchScript file
        rows += [
            *(
                [
                    Target(
                        f"tiny, REST JSON, {c} conns: inferd / naive ({runtime})",
                        _ratio(rate("tiny", rest), rate("tiny", NAIVE)),
                        2.5,
                        "x",
                    )
                ]
                if naive
                else []
            ),
            Target(
                f"tiny, REST JSON, {c} conns: inferd / HTTP floor ({runtime})",
                _ratio(rate("tiny", rest), rate("tiny", FLOOR)),
                0.6,
                "x",
            ),
            *(
                [
                    Target(
                        f"wide, REST JSON, {c} conns: inferd / naive ({runtime})",
                        _ratio(rate("wide", rest), rate("wide", NAIVE)),
                        5,
                        "x",
                    )
                ]
                if naive
                else []
            ),
            Target(
                f"wide, REST JSON, {c} conns: inferd p99 ({runtime})",
                point("wide", rest, c, "p99_ms"),
                50,
                " ms",
                at_least=False,
            ),
            Target(
                f"wide, REST binary, {c} conns: inferd rows/s / model alone at batch 64 ({runtime})",
                _ratio(rate("wide", binary), alone.rows_per_s if alone else None),
                0.6,
                "x",
            ),
            Target(
                f"tiny, REST JSON, 1 conn: inferd p50 minus model alone per call at batch 1 ({runtime})",
                added,
                0.5,
                " ms",
                at_least=False,
            ),
        ]
    return rows


# -- the report ------------------------------------------------------------------------------


def _contestant_order(runtimes: tuple[str, ...] = ("torchscript", "onnx")) -> list[str]:
    order = [FLOOR, NAIVE]
    for runtime in runtimes:
        order += [inferd_label(protocol, runtime) for protocol in INFERD_PROTOCOLS]
    return order


def _model_table(results: Results, model: str) -> list[str]:
    lines = [
        "| contestant | conc. | req/s | rows/s | p50 ms | p99 ms | generator CPU % | server CPU % | other CPU % | errors "
        "| inferd batch rows | model ms/batch | queue ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for contestant in _contestant_order():
        for m in sorted(
            (x for x in results.measurements if x.model == model and x.contestant == contestant),
            key=lambda x: x.concurrency,
        ):
            lines.append(
                f"| {contestant} | {m.concurrency} | {m.req_per_s:,.0f} | {m.rows_per_s:,.0f} | "
                f"{m.p50_ms:.2f} | {m.p99_ms:.2f} | {m.generator_cpu_pct:.0f} | "
                f"{m.server_cpu_pct:.0f} | {m.other_cpu_pct:.0f} | {m.errors} | "
                f"{_opt(m.mean_batch, 1)} | {_opt(m.model_ms_per_batch, 3)} | {_opt(m.queue_ms, 2)} |"
            )
    return lines


def _opt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _limit_table(results: Results) -> list[str]:
    lines = [
        "| model | runtime | batch | calls/s | rows/s | per call p50 ms |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for (model, runtime), rows in results.limits.items():
        best = max(rows, key=lambda r: r.rows_per_s)
        for r in rows:
            mark = " (best)" if r is best else ""
            lines.append(
                f"| {model} | {runtime} | {r.batch}{mark} | {r.calls_per_s:,.0f} | "
                f"{r.rows_per_s:,.0f} | {r.p50_ms:.3f} |"
            )
    return lines


def _model_time_table(results: Results) -> list[str]:
    """inferd's own time per model execution against the model alone at the nearest batch."""
    lines = [
        "| model | contestant | conc. | inferd batch rows | inferd model ms/batch "
        "| model alone ms at batch | inferd / alone |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for m in results.measurements:
        if m.mean_batch is None or m.model_ms_per_batch is None:
            continue
        runtime = m.contestant.rsplit("(", 1)[-1].rstrip(")")
        rows = results.limits.get((m.model, runtime), [])
        if not rows:
            continue
        near = min(rows, key=lambda r: abs(r.batch - m.mean_batch))  # type: ignore[operator]
        lines.append(
            f"| {m.model} | {m.contestant} | {m.concurrency} | {m.mean_batch:.1f} | "
            f"{m.model_ms_per_batch:.3f} | {near.p50_ms:.3f} (batch {near.batch}) | "
            f"{m.model_ms_per_batch / near.p50_ms:.1f}x |"
        )
    return lines


def write_report(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = results.options
    env = results.environment
    plot = path.with_name(PLOT_NAME)
    plotted = write_plot(results, plot)
    others = [m.other_cpu_pct for m in results.measurements]
    noise = sum(others) / len(others) if others else 0.0
    lines = [
        "# inferd benchmarks",
        "",
        f"- Date: {env['date']}; the whole run took {results.wall_s / 60:.1f} min.",
        f"- Machine: {env['cores']} cores ({env['cpu']}), Linux {env['kernel']}; "
        f"Python {env['python']}, torch {env['torch']}, onnxruntime {env['onnxruntime']}, "
        f"numpy {env['numpy']}, {env['wrk']}. inferd at `{env['commit']}` (`-dirty`: the "
        "working tree had uncommitted changes).",
        f"- Command: `make bench` (`.venv/bin/python {options.command}`).",
        f"- Each point: {options.duration:g} s of load after a {options.warmup:g} s warm-up per "
        f"contestant; concurrency {', '.join(map(str, options.concurrency))}. Every request "
        "carries one row, so rows/s = req/s for the servers.",
        "- HTTP load: wrk, 1 thread, keep-alive connections on loopback. gRPC and WebSocket "
        "load: `pyload.py`, one grpc.aio channel with N calls in flight (raw input contents), "
        "or N WebSocket connections with one V2 JSON message in flight on each.",
        "- One intra-op thread for torch and ONNX Runtime in every contestant. inferd serves "
        f"all four models from one process: max_batch_size {options.max_batch_size}, "
        f"max queue delay {options.batch_delay_ms:g} ms (a batch takes whatever is queued when "
        "the model is free), 1 instance per model, the WebSocket per-connection message "
        "rate limit raised out of the way.",
        "",
        "**Read with care:** the load generator runs on the same cores as the server. On a "
        f"{env['cores']}-core machine, a generator at 60-100 % CPU takes a whole core that "
        "the server would otherwise have. CPU columns are in % of one core "
        f"({int(env['cores']) * 100} % is the whole machine): the generator's, the server "
        "process's (all its threads), and 'other', everything else the machine ran meanwhile "
        "(other people's work on a shared machine: the noise). Python gRPC and WebSocket "
        "clients cost far more per call than wrk, so those rows are held back by their "
        "client. Differences "
        f"under ~10 % are not meaningful. In this run other processes used {noise:.0f} % of "
        "one core on average during the measured points.",
        "",
        "## Targets",
        "",
        "| target | measured | goal | verdict |",
        "|---|--:|---|---|",
        *(t.row() for t in targets(results)),
        "",
        "## The limit: the model alone, in-process",
        "",
        *_limit_table(results),
        "",
    ]
    for model in options.models:
        sizes = " -> ".join(map(str, MODELS[model].sizes))
        lines += [f"## {model} ({sizes})", "", *_model_table(results, model), ""]
    if plotted:
        lines += ["## Throughput", "", f"![throughput vs concurrency]({plot.name})", ""]
    lines += [
        "## inferd's model time against the model alone",
        "",
        "From inferd's statistics endpoint over each point: rows per model execution and the "
        "time one execution took inside inferd (tensor conversion and the runtime call, in "
        "its worker thread), next to the model alone at the nearest batch size measured. "
        "A ratio well above 1 means time is lost around the runtime call (thread handoffs, "
        "contention for the GIL with the event loop), not in the model.",
        "",
        *_model_time_table(results),
        "",
    ]
    lines += ["## Notes", ""]
    lines += [f"- {note}" for note in results.notes] or ["- Every contestant ran."]
    lines += [
        "- Contestants: HTTP floor = `floor_app.py`, a bare ASGI app on uvicorn (httptools, "
        "uvloop) that parses the REST JSON body with orjson and answers fixed JSON; naive = "
        "`naive_app.py`, FastAPI + pydantic + torch, one request at a time; inferd REST JSON = "
        "`POST /v2/models/{m}/infer` with JSON data; /predict = `POST /models/{m}/predict` "
        "(the simple API, named model); REST binary = the binary tensor data extension for "
        "input and output; gRPC = `ModelInfer` with raw contents; WebSocket = V2 JSON messages "
        "on `/v2/models/{m}/stream`.",
        "- Raw numbers: `benchmarks/out/results.json` (not committed). Profile: "
        "`bash benchmarks/profile.sh`.",
        "",
    ]
    path.write_text("\n".join(lines))
    dump = {
        "environment": env,
        "options": {k: str(v) for k, v in dataclasses.asdict(options).items()},
        "limits": [
            dataclasses.asdict(r) | {"model": k[0]} for k, v in results.limits.items() for r in v
        ],
        "measurements": [m.as_dict() for m in results.measurements],
        "notes": results.notes,
    }
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(dump, indent=2))


def write_plot(results: Results, path: Path) -> bool:
    """Throughput vs concurrency per contestant, one panel per model; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results.notes.append("No plot: matplotlib is not installed (`pip install -e '.[dev]'`).")
        return False
    models = list(results.options.models)
    figure, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 5.5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for contestant in _contestant_order():
            points = sorted(
                (
                    m
                    for m in results.measurements
                    if m.model == model and m.contestant == contestant
                ),
                key=lambda m: m.concurrency,
            )
            if points:
                kind = next((k for k in COLOURS if k in contestant), FLOOR)
                ax.plot(
                    [m.concurrency for m in points],
                    [m.rows_per_s for m in points],
                    "--" if "(onnx)" in contestant else "-",
                    color=COLOURS[kind],
                    marker="s" if "(onnx)" in contestant else "o",
                    label=contestant,
                )
        for batch, color in ((1, "tab:brown"), (64, "black")):
            alone = results.limit(model, "torchscript", batch)
            if alone:
                ax.axhline(
                    alone.rows_per_s,
                    color=color,
                    linestyle=":",
                    label=f"model alone, batch {batch} (torchscript)",
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(
            list(results.options.concurrency), [str(c) for c in results.options.concurrency]
        )
        ax.set_xlabel("concurrent connections / calls in flight")
        ax.set_ylabel("rows/s (log)")
        ax.set_title(f"{model} ({' -> '.join(map(str, MODELS[model].sizes))})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.suptitle(
        f"inferd benchmarks, {results.environment['cores']} cores, {results.environment['date']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True

"""Where inferd's time goes: py-spy on the server while wrk loads it.

For each scenario, wrk runs at 64 connections while py-spy samples the server twice: once
for collapsed stacks (summarised into ``<scenario>-top.txt``: busy threads, functions by
own and by inclusive time) and once for a flamegraph (``<scenario>.svg``). Everything goes
to ``benchmarks/out/profile/``. py-spy runs ``--nonblocking`` (it does not pause the server)
but takes CPU of its own, so throughput under profiling is lower than in RESULTS.md.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from artifacts import build_repository, payloads
from contestants import REST_BINARY, REST_JSON, inferd_http, inferd_label
from loadgen import WRK_MARK, write_wrk_script
from servers import free_port, http_ok, post, running

#: name -> (model, runtime, protocol)
SCENARIOS = {
    "tiny-rest-json-torchscript": ("tiny", "torchscript", REST_JSON),
    "tiny-rest-json-onnx": ("tiny", "onnx", REST_JSON),
    "wide-rest-binary-torchscript": ("wide", "torchscript", REST_BINARY),
}
CONCURRENCY = 64
RATE = 97  # samples/s; off the round numbers so sampling does not lock onto a period
LINE = re.compile(r":\d+\)$")


def _py_spy() -> str:
    local = Path(sys.executable).with_name("py-spy")
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is missing: `pip install -e '.[dev]'` (or `pip install py-spy`)")
    return found


def profile(options: Any, out: Path) -> int:
    py_spy = _py_spy()
    out.mkdir(parents=True, exist_ok=True)
    seconds = max(options.duration, 5.0)
    with tempfile.TemporaryDirectory(prefix="inferd-profile-") as tmp:
        work = Path(tmp)
        build_repository(work / "models", ["tiny", "wide"], options.max_batch_size)
        port = free_port()
        command = [
            str(Path(sys.executable).with_name("inferd")),
            "serve",
            str(work / "models"),
            f"--port={port}",
            "--grpc-port=0",
            "--log-level=warning",
            f"--batch-timeout-ms={options.batch_delay_ms}",
        ]
        base = f"http://127.0.0.1:{port}"
        log = out / "inferd.log"
        with running("inferd", command, log, lambda: http_ok(f"{base}/ready")) as server:
            for name, (model, runtime, protocol) in SCENARIOS.items():
                data = payloads(model)
                label = inferd_label(protocol, runtime)
                contestant = next(
                    c for c in inferd_http(base, model, runtime, data) if c.label == label
                )
                target = contestant.target
                contestant.check(*post(target.url, target.body, target.headers), data.expected)
                script = write_wrk_script(target, work / "wrk")
                wrk = subprocess.Popen(
                    [
                        "wrk",
                        "-t1",
                        f"-c{CONCURRENCY}",
                        f"-d{2 * seconds + 3:.0f}s",
                        "-s",
                        str(script),
                        target.url,
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                time.sleep(1.0)
                raw = out / f"{name}.txt"
                record = [py_spy, "record", f"--pid={server.pid}", f"--duration={seconds:.0f}"]
                record += [f"--rate={RATE}", "--nonblocking", "--threads"]
                subprocess.run(
                    [*record, "--format=raw", f"--output={raw}"], check=True, capture_output=True
                )
                svg = out / f"{name}.svg"
                subprocess.run(
                    [*record, "--format=flamegraph", f"--output={svg}"],
                    check=True,
                    capture_output=True,
                )
                output, _ = wrk.communicate()
                summary = next((x for x in output.splitlines() if x.startswith(WRK_MARK)), "")
                top = summarise(raw, seconds)
                text = f"{name}: {label}, {model}, {CONCURRENCY} connections under py-spy\n"
                text += f"wrk: {summary[len(WRK_MARK) :]}\n\n{top}"
                (out / f"{name}-top.txt").write_text(text)
                print(text)
                print(f"flamegraph: {svg}\n")
    return 0


def _function(frame: str) -> str:
    return LINE.sub(")", frame)


def summarise(raw: Path, seconds: float, limit: int = 25) -> str:
    """Busy threads, then functions by own samples and by inclusive samples."""
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, frames = frames[0], [_function(f) for f in frames[1:]]
        total += count
        threads[thread] += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"
    lines = [
        f"{total} samples of busy threads in {seconds:.0f} s at {RATE}/s "
        f"(~{total / (seconds * RATE):.2f} threads busy on average)",
        "",
        "busy threads:",
    ]
    lines += [f"  {100 * n / total:5.1f}%  {t}" for t, n in threads.most_common()]
    for title, counter in (("own time", own), ("inclusive time", inclusive)):
        lines += ["", f"top {limit} functions by {title} (% of busy samples):"]
        lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in counter.most_common(limit)]
    return "\n".join(lines) + "\n"

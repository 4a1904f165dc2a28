"""Sentence embeddings (minilm, all-MiniLM-L6-v2): sentences/s of the model alone against
inferd serving it over REST JSON.

    .venv/bin/python benchmarks/text.py                  # ~1 min -> benchmarks/out/TEXT.md
    .venv/bin/python benchmarks/text.py --duration 3 --concurrency 1,32

The model alone is the served ``model.py`` called in-process (tokenise, pad, ONNX Runtime,
one intra-op thread) at batch 1 and at the server's max batch size: the limit. inferd gets
one sentence per request from an asyncio httpx client in this process, at each concurrency,
so rows of different lengths meet in its batches. Sentences are 4 to 40 words drawn from a
fixed vocabulary with a fixed seed. The client shares the machine with the server: its CPU
share is printed beside each point.

Wall-clock rates swing with whatever else the machine runs; sentences per CPU-second do
much less (the model alone: CPU time of the calling thread; inferd: CPU time of the whole
server process, all its threads), so the report gives both and compares the second.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from servers import free_port, http_ok, running

from inferd.text.build import build_text_example

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
WORDS = [
    "the",
    "a",
    "model",
    "server",
    "answers",
    "every",
    "request",
    "with",
    "vectors",
    "that",
    "describe",
    "meaning",
    "of",
    "text",
    "quickly",
    "while",
    "batching",
    "rows",
    "together",
    "on",
    "two",
    "small",
    "cores",
    "under",
    "steady",
    "load",
    "from",
    "many",
    "clients",
    "who",
    "send",
    "sentences",
    "about",
    "weather",
    "markets",
    "food",
    "travel",
    "music",
    "sport",
    "science",
]


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [
        " ".join(rng.choice(WORDS, size=int(rng.integers(4, 41))).tolist()).capitalize() + "."
        for _ in range(count)
    ]


def load_model(repo: Path) -> Any:
    spec = importlib.util.spec_from_file_location("minilm_model", repo / "minilm/1/model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Model()
    model.load()
    return model


def model_alone(
    repo: Path, batch: int, duration: float, corpus: list[str]
) -> tuple[float, float, float]:
    """(sentences/s, sentences per CPU-second, p50 ms per call) of the model in-process."""
    model = load_model(repo)
    rows = [
        np.array([s.encode() for s in corpus[i : i + batch]], dtype=object)
        for i in range(0, len(corpus) - batch, batch)
    ]
    for row in rows[:3]:
        model.predict({"text": row})
    times: list[float] = []
    done = 0
    cpu = time.thread_time()
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        row = rows[len(times) % len(rows)]
        start = time.perf_counter()
        model.predict({"text": row})
        times.append(time.perf_counter() - start)
        done += len(row)
    cpu = time.thread_time() - cpu
    return done / sum(times), done / cpu, statistics.median(times) * 1000


async def load(
    url: str, concurrency: int, duration: float, corpus: list[str], server_cpu: Callable[[], float]
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0

    async def worker(client: httpx.AsyncClient, offset: int, end: float) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < end:
            text = corpus[i % len(corpus)]
            i += concurrency
            body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}
            start = time.perf_counter()
            answer = await client.post("/v2/models/minilm/infer", json=body)
            latencies.append(time.perf_counter() - start)
            errors += answer.status_code != 200

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        warm = time.perf_counter() + 1
        await asyncio.gather(*(worker(client, i, warm) for i in range(concurrency)))
        latencies.clear()
        cpu, served, start = time.process_time(), server_cpu(), time.perf_counter()
        end = start + duration
        await asyncio.gather(*(worker(client, i, end) for i in range(concurrency)))
        wall = time.perf_counter() - start
        client_cpu = (time.process_time() - cpu) / wall * 100
        served = server_cpu() - served
    latencies.sort()
    return {
        "sentences_per_s": len(latencies) / wall,
        "sentences_per_cpu_s": len(latencies) / served,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": errors,
        "client_cpu_pct": client_cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point")
    parser.add_argument("--concurrency", default="1,32", help="inferd's points, e.g. 1,8,32")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--output", type=Path, default=OUT / "TEXT.md")
    args = parser.parse_args()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    corpus = sentences(512)
    lines = [
        "# minilm: sentences/s",
        "",
        f"`{' '.join(['benchmarks/text.py', *sys.argv[1:]])}`; {args.duration:g} s per point.",
        "",
        "| contestant | point | sentences/s | sentences/CPU-s | p50 ms | p99 ms | client CPU % |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        build_text_example(repo)
        alone: dict[int, float] = {}
        for batch in sorted({1, args.max_batch_size}):
            rate, per_cpu, p50 = model_alone(repo, batch, args.duration, corpus)
            alone[batch] = per_cpu
            lines.append(
                f"| model alone | batch {batch} | {rate:.1f} | {per_cpu:.1f} | {p50:.2f} | | |"
            )
            print(lines[-1], flush=True)
        port = free_port()
        command = [
            sys.executable, "-m", "inferd", "serve", str(repo), "--port", str(port),
            "--grpc-port", "0", "--log-level", "warning",
            "--max-batch-size", str(args.max_batch_size),
        ]  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        ready = lambda: http_ok(f"{url}/ready")  # noqa: E731
        served: dict[int, float] = {}
        with running("inferd", command, OUT / "text-inferd.log", ready) as server:
            for c in concurrency:
                point = asyncio.run(load(url, c, args.duration, corpus, server.cpu_seconds))
                served[c] = point["sentences_per_cpu_s"]
                lines.append(
                    f"| inferd REST JSON | concurrency {c} | {point['sentences_per_s']:.1f} | "
                    f"{point['sentences_per_cpu_s']:.1f} | {point['p50_ms']:.2f} | "
                    f"{point['p99_ms']:.2f} | {point['client_cpu_pct']:.0f} |"
                )
                print(lines[-1], flush=True)
                if point["errors"]:
                    raise SystemExit(f"{point['errors']:.0f} requests failed")
    lines += [
        "",
        "Sentences per CPU-second, inferd over the model alone (batch 1 -> concurrency 1, "
        f"batch {args.max_batch_size} -> the highest concurrency):",
        f"{served[concurrency[0]] / alone[1]:.2f} and "
        f"{served[concurrency[-1]] / alone[args.max_batch_size]:.2f}.",
    ]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

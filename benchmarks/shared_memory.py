"""System shared memory against binary HTTP: the wide model (256 -> 2048 -> 2048 -> 16,
ONNX) called by one tritonclient.http client, in turns, with its inputs and outputs sent
in the body (the binary tensor extension, tritonclient's default) or left in registered
regions (tritonclient.utils.shared_memory). Reports the median and p90 latency of each, per
batch size; what shared memory saves is the body's bytes (in: rows x 1 KiB, out: rows x 64 B)
crossing the socket and being copied through the HTTP stack.

Usage: ``python benchmarks/shared_memory.py [--requests 200] [--rounds 3]``: brief, one
client, sequential requests (a latency comparison, not a load test).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "src")]

from inferd.example import build_example  # noqa: E402
from tests.conftest import ServerProcess  # noqa: E402


def timed(call: Callable[[], object], count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        build_example(root, with_tensorflow=False)
        server = ServerProcess(root)
        try:
            server.wait_ready()
            client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
            for rows in args.batches:
                run(client, rows, args.requests, args.rounds)
        finally:
            server.stop()


def run(client: httpclient.InferenceServerClient, rows: int, count: int, rounds: int) -> None:
    x = np.random.default_rng(0).standard_normal((rows, 256), dtype=np.float32)
    in_size, out_size = x.nbytes, rows * 16 * 4
    region_in = shm.create_shared_memory_region("bench_in", "/inferd_bench_in", in_size)
    region_out = shm.create_shared_memory_region("bench_out", "/inferd_bench_out", out_size)
    try:
        shm.set_shared_memory_region(region_in, [x])
        client.register_system_shared_memory("bench_in", "/inferd_bench_in", in_size)
        client.register_system_shared_memory("bench_out", "/inferd_bench_out", out_size)
        binary_in = httpclient.InferInput("input", [rows, 256], "FP32")
        binary_in.set_data_from_numpy(x, binary_data=True)
        binary_out = httpclient.InferRequestedOutput("output", binary_data=True)
        shared_in = httpclient.InferInput("input", [rows, 256], "FP32")
        shared_in.set_shared_memory("bench_in", in_size)
        shared_out = httpclient.InferRequestedOutput("output")
        shared_out.set_shared_memory("bench_out", out_size)

        def binary() -> object:
            return client.infer("wide", [binary_in], outputs=[binary_out]).as_numpy("output")

        def shared() -> object:
            client.infer("wide", [shared_in], outputs=[shared_out])
            return shm.get_contents_as_numpy(region_out, np.float32, [rows, 16])

        np.testing.assert_allclose(binary(), shared(), rtol=1e-6)  # same answer both ways
        results: dict[str, list[float]] = {"binary HTTP": [], "shared memory": []}
        for _ in range(rounds):
            for name, call in (("binary HTTP", binary), ("shared memory", shared)):
                timed(call, 20)  # warm
                results[name] += timed(call, count)
        for name, times in results.items():
            quantiles = statistics.quantiles(times, n=10)
            print(
                f"rows={rows:3d} {name:14s} p50={statistics.median(times):6.3f} ms "
                f"p90={quantiles[8]:6.3f} ms  ({len(times)} requests)"
            )
        client.unregister_system_shared_memory()
    finally:
        shm.destroy_shared_memory_region(region_in)
        shm.destroy_shared_memory_region(region_out)


if __name__ == "__main__":
    main()

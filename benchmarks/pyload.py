"""The Python load generators: N requests in flight over gRPC (``ModelInfer`` on one
channel, the input as raw contents, the KServe V2 / Triton wire format) or over WebSocket
(N connections to ``/v2/models/{model}/stream``, one V2 message in flight on each).

Prints ``start`` when the measured window opens (after the warm-up), then one JSON line:
requests, errors, duration_s, p50_ms, p99_ms and cpu_s, this process's CPU time (all its
threads) during the window.

    python benchmarks/pyload.py grpc 127.0.0.1:8081 tiny_torchscript row.f32 --concurrency 16
    python benchmarks/pyload.py ws ws://127.0.0.1:8080 tiny_torchscript row.f32 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson
import websockets
from tritonclient.grpc import service_pb2, service_pb2_grpc

#: One request and its answer; raises when the answer is an error.
Call = Callable[[], Awaitable[None]]


def infer_request(model: str, row: np.ndarray[Any, Any]) -> Any:
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add()
    tensor.name = "input"
    tensor.datatype = "FP32"
    tensor.shape.extend([1, row.size])
    request.raw_input_contents.append(row.astype(np.float32).tobytes())
    return request


def output_of(response: Any) -> np.ndarray[Any, Any]:
    return np.frombuffer(response.raw_output_contents[0], dtype=np.float32)


def infer_once(target: str, model: str, row: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """One blocking gRPC call, to check the server answers what the model computes."""
    with grpc.insecure_channel(target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        return output_of(stub.ModelInfer(infer_request(model, row), timeout=10))


def server_ready(target: str) -> bool:
    try:
        with grpc.insecure_channel(target) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            return bool(stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=2).ready)
    except grpc.RpcError:
        return False


def ws_message(row: np.ndarray[Any, Any]) -> bytes:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, row.size], "data": row.tolist()}
    return orjson.dumps({"inputs": [tensor]})


def ws_output(answer: str | bytes) -> np.ndarray[Any, Any]:
    doc = orjson.loads(answer)
    if "error" in doc:
        raise RuntimeError(doc["error"])
    return np.asarray(doc["outputs"][0]["data"], dtype=np.float32)


async def ws_infer_once(base: str, model: str, row: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """One WebSocket message and its answer, for the same check."""
    async with websockets.connect(f"{base}/v2/models/{model}/stream") as socket:
        await socket.send(ws_message(row).decode())
        return ws_output(await asyncio.wait_for(socket.recv(), 10))


async def grpc_calls(
    stack: contextlib.AsyncExitStack, target: str, model: str, row: np.ndarray[Any, Any]
) -> Callable[[], Awaitable[Call]]:
    channel = await stack.enter_async_context(grpc.aio.insecure_channel(target))
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = infer_request(model, row)

    async def call() -> None:
        await stub.ModelInfer(request, timeout=10)

    async def one_channel() -> Call:
        return call  # every worker shares the channel, as gRPC clients do

    return one_channel


async def ws_calls(
    stack: contextlib.AsyncExitStack, base: str, model: str, row: np.ndarray[Any, Any]
) -> Callable[[], Awaitable[Call]]:
    message = ws_message(row).decode()

    async def connection() -> Call:
        socket = await stack.enter_async_context(
            websockets.connect(f"{base}/v2/models/{model}/stream", compression=None)
        )

        async def call() -> None:
            await socket.send(message)
            if "error" in orjson.loads(await socket.recv()):
                raise RuntimeError("the server answered an error")

        return call

    return connection


async def load(
    open_worker: Callable[[], Awaitable[Call]], concurrency: int, duration: float, warmup: float
) -> dict[str, Any]:
    calls = [await open_worker() for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + duration

    async def worker(call: Call) -> None:
        nonlocal errors
        while True:
            sent = time.perf_counter()
            if sent >= stop:
                return
            try:
                await call()
            except (grpc.aio.AioRpcError, RuntimeError):
                errors += sent >= measure_from
                continue
            if sent >= measure_from:
                latencies.append(time.perf_counter() - sent)

    async def mark() -> float:
        await asyncio.sleep(warmup)
        print("start", flush=True)
        return time.process_time()

    cpu_start, *_ = await asyncio.gather(mark(), *(worker(c) for c in calls))
    elapsed = time.perf_counter() - measure_from
    cpu = time.process_time() - cpu_start
    ordered = np.sort(np.array(latencies or [0.0]))
    return {
        "requests": len(latencies),
        "errors": errors,
        "duration_s": elapsed,
        "p50_ms": float(np.percentile(ordered, 50)) * 1000,
        "p99_ms": float(np.percentile(ordered, 99)) * 1000,
        "cpu_s": cpu,
    }


CLIENTS = {"grpc": grpc_calls, "ws": ws_calls}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    row = np.frombuffer(args.row.read_bytes(), dtype=np.float32)
    async with contextlib.AsyncExitStack() as stack:
        open_worker = await CLIENTS[args.protocol](stack, args.target, args.model, row)
        return await load(open_worker, args.concurrency, args.duration, args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("protocol", choices=sorted(CLIENTS))
    parser.add_argument("target", help="gRPC host:port, or the WebSocket base ws://host:port")
    parser.add_argument("model")
    parser.add_argument("row", type=Path, help="one input row as raw FP32 bytes")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()

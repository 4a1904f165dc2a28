"""The limit: the model called in-process, no server, one intra-op thread.

A call converts a numpy batch into the runtime's tensor and back, as a server must.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Call = Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]


@dataclasses.dataclass(frozen=True)
class LimitResult:
    runtime: str
    batch: int
    calls_per_s: float
    p50_ms: float

    @property
    def rows_per_s(self) -> float:
        return self.calls_per_s * self.batch


def _torchscript(path: Path) -> Call:
    import torch

    torch.set_num_threads(1)
    module = torch.jit.load(str(path)).eval()

    def call(batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            result: np.ndarray[Any, Any] = module(torch.from_numpy(batch)).numpy()
            return result

    return call


def _onnx(path: Path) -> Call:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def call(batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        result: np.ndarray[Any, Any] = session.run(None, {"input": batch})[0]
        return result

    return call


LOADERS: dict[str, Callable[[Path], Call]] = {"torchscript": _torchscript, "onnx": _onnx}


def measure(
    runtime: str,
    path: Path,
    row: np.ndarray[Any, Any],
    expected: np.ndarray[Any, Any],
    batch_sizes: tuple[int, ...],
    seconds: float,
) -> list[LimitResult]:
    """Calls per second and the median call time at each batch size, after a check."""
    call = LOADERS[runtime](path)
    got = call(row[None, :])[0]
    if not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
        raise RuntimeError(f"{runtime} {path}: output {got} differs from the reference {expected}")
    results = []
    for size in batch_sizes:
        batch = np.ascontiguousarray(np.repeat(row[None, :], size, axis=0))
        _run_for(call, batch, min(seconds, 0.3))
        durations = _run_for(call, batch, seconds)
        results.append(
            LimitResult(
                runtime=runtime,
                batch=size,
                calls_per_s=len(durations) / sum(durations),
                p50_ms=statistics.median(durations) * 1000,
            )
        )
    return results


def _run_for(call: Call, batch: np.ndarray[Any, Any], seconds: float) -> list[float]:
    durations = []
    end = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        call(batch)
        now = time.perf_counter()
        durations.append(now - start)
        if now >= end:
            return durations

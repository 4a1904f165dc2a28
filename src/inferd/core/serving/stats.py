"""Per-version inference statistics in the shape of Triton's statistics extension.

Counters only grow; durations are nanoseconds. One ``VersionStats`` per loaded model
version is shared by the batcher (queue, compute, batch sizes) and the service (success,
failure, end-to-end) and the prediction cache (hits: lookup time; misses: lookup and
insertion time, as Triton counts them).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9)

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclasses.dataclass(slots=True)
class BatchStat:
    compute_input: Duration = dataclasses.field(default_factory=Duration)
    compute_infer: Duration = dataclasses.field(default_factory=Duration)
    compute_output: Duration = dataclasses.field(default_factory=Duration)


@dataclasses.dataclass(slots=True)
class VersionStats:
    name: str
    version: str
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    success: Duration = dataclasses.field(default_factory=Duration)
    fail: Duration = dataclasses.field(default_factory=Duration)
    queue: Duration = dataclasses.field(default_factory=Duration)
    compute_input: Duration = dataclasses.field(default_factory=Duration)
    compute_infer: Duration = dataclasses.field(default_factory=Duration)
    compute_output: Duration = dataclasses.field(default_factory=Duration)
    cache_hit: Duration = dataclasses.field(default_factory=Duration)
    cache_miss: Duration = dataclasses.field(default_factory=Duration)
    batches: dict[int, BatchStat] = dataclasses.field(default_factory=dict)
    #: Extra sections of the statistics by key, read when the statistics are (a
    #: pipeline's steps, a latency target's state).
    sections: dict[str, Callable[[], Any]] = dataclasses.field(default_factory=dict)

    def record_batch(
        self, rows: int, requests: int, input_s: float, infer_s: float, output_s: float
    ) -> None:
        self.execution_count += 1
        self.inference_count += rows
        self.last_inference_ms = int(time.time() * 1000)
        # Triton counts compute durations once per request of the batch.
        self.compute_input.add(input_s * requests, requests)
        self.compute_infer.add(infer_s * requests, requests)
        self.compute_output.add(output_s * requests, requests)
        stat = self.batches.get(rows)
        if stat is None:  # (setdefault would build one for every batch)
            stat = self.batches[rows] = BatchStat()
        stat.compute_input.add(input_s)
        stat.compute_infer.add(infer_s)
        stat.compute_output.add(output_s)

    def as_triton(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.as_dict(),
                "fail": self.fail.as_dict(),
                "queue": self.queue.as_dict(),
                "compute_input": self.compute_input.as_dict(),
                "compute_infer": self.compute_infer.as_dict(),
                "compute_output": self.compute_output.as_dict(),
                "cache_hit": self.cache_hit.as_dict(),
                "cache_miss": self.cache_miss.as_dict(),
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": stat.compute_input.as_dict(),
                    "compute_infer": stat.compute_infer.as_dict(),
                    "compute_output": stat.compute_output.as_dict(),
                }
                for size, stat in sorted(self.batches.items())
            ],
            **{key: section() for key, section in self.sections.items()},
        }

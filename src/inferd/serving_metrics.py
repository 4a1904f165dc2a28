"""Prometheus series of pipelines and latency targets, on the service's registry
(:class:`inferd.metrics.Metrics` holds one :class:`ServingMetrics`).

Only versions that have a pipeline or a latency target have these series; each is bound to
its labels once, when the version loads, and removed when it unloads.
"""

from __future__ import annotations

import contextlib
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Why a latency target refused a request at admission (see inferd.core.serving.latency).
REFUSAL_REASONS: Final = ("target", "deadline", "queue")
STEP_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.step_time = Histogram(
            "inferd_pipeline_step_duration_seconds",
            "Time one step of a pipeline took for one request (its queue and compute), "
            "answered steps only.",
            ["model", "version", "step"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.step_failures = Counter(
            "inferd_pipeline_step_failures",
            "Requests a pipeline step failed (deadline, refusal, model error...).",
            ["model", "version", "step"],
            registry=registry,
        )
        self.batch_limit = Gauge(
            "inferd_batch_limit",
            "Rows per batch the latency target allows now (the adaptive batch size).",
            ["model", "version"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.predicted_wait = Gauge(
            "inferd_predicted_wait_seconds",
            "Queue wait plus compute predicted for a one-row request arriving now "
            "(latency target on).",
            ["model", "version"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.early_refusals = Counter(
            "inferd_early_refusals",
            "Requests a latency target refused before computing them, by reason (target: the "
            "predicted wait exceeds the target; deadline: it exceeds the request's deadline; "
            "queue: taken from the queue too late to be answered within the target).",
            ["model", "version", "reason"],
            registry=registry,
        )

    def forget(self, model: str, version: str) -> None:
        """Drop every series of a version that is no longer served."""
        for metric in (self.batch_limit, self.predicted_wait):
            with contextlib.suppress(KeyError):
                metric.remove(model, version)
        for family in (self.step_time, self.step_failures, self.early_refusals):
            for labels in [key for key in list(family._metrics) if key[:2] == (model, version)]:
                with contextlib.suppress(KeyError):
                    family.remove(*labels)


class TargetGauges:
    """What one version's latency target reports, bound to its labels."""

    def __init__(self, metrics: ServingMetrics, model: str, version: str) -> None:
        self._limit = metrics.batch_limit.labels(model, version)
        self._wait = metrics.predicted_wait.labels(model, version)
        self._refused = {
            reason: metrics.early_refusals.labels(model, version, reason)
            for reason in REFUSAL_REASONS
        }

    def limit(self, rows: int) -> None:
        self._limit.set(rows)

    def wait(self, seconds: float) -> None:
        self._wait.set(seconds)

    def refused(self, reason: str) -> None:
        self._refused[reason].inc()


class StepSeries:
    """One pipeline step's series, bound to their labels."""

    def __init__(self, metrics: ServingMetrics, model: str, version: str, step: str) -> None:
        self._time = metrics.step_time.labels(model, version, step)
        self._failures = metrics.step_failures.labels(model, version, step)

    def answered(self, seconds: float) -> None:
        self._time.observe(seconds)

    def failed(self) -> None:
        self._failures.inc()

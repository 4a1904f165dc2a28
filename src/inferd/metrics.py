"""Prometheus metrics. One registry per service, so tests stay apart; with several worker
processes every metric is also written to a shared folder and ``render`` sums them.

Labels never come from unvalidated input: a model or version that the request named but
the server does not serve is counted under :data:`UNKNOWN` (a name no model can have), so
the series are bounded by what the repository serves. A version that stops being served
loses its series (:meth:`Metrics.forget`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from inferd.metric_children import BoundCount, BoundHistogram
from inferd.serving_metrics import ServingMetrics

LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Largest differences between a shadow's output and the primary's (0: identical).
DIFFERENCE_BUCKETS: Final = (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0)
#: What became of a request mirrored to a shadow version (see inferd.core.traffic.shadow).
SHADOW_OUTCOMES: Final = ("agree", "disagree", "dropped", "error")
#: The differences observed per compared output.
SHADOW_MEASURES: Final = ("abs", "rel")

#: The model and version label of requests for what the server does not serve (model
#: names start with a letter or digit, so no model is called this).
UNKNOWN: Final = "_unknown"

#: Outcome (the core's error code) -> rejection reason label.
REJECTIONS: Final[dict[str, str]] = {
    "resource_exhausted": "queue_full_or_rate_limited",
    "deadline_exceeded": "deadline",
    "unavailable": "unavailable",
    "invalid_argument": "invalid",
    "payload_too_large": "too_large",
    "not_found": "not_found",
}


class Metrics:
    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self._children: dict[tuple[str, ...], tuple[BoundCount, BoundHistogram | None]] = {}
        #: Bound children of the cache's series, by their labels.
        self._lookups: dict[tuple[str, str], BoundCount] = {}
        self._held: dict[str, Gauge] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "inferd_requests",
            "Inference requests by model, version, protocol and outcome.",
            ["model", "version", "protocol", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inferd_request_duration_seconds",
            "End-to-end inference latency inside the server.",
            ["model", "version", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "inferd_rejections",
            "Requests refused before inference, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limit_storage_failures = Counter(
            "inferd_rate_limit_storage_failures",
            "Rate limit checks decided without the storage (it failed or was failing), "
            "by what the failure mode made of them.",
            ["outcome"],
            registry=self.registry,
        )
        self.model_failures = Counter(
            "inferd_model_failures",
            "Requests failed by their model (it raised or answered wrongly).",
            ["model", "version"],
            registry=self.registry,
        )
        self.load_failures = Counter(
            "inferd_model_load_failures",
            "Model (version) loads that failed, by model and class (config_error, ...); "
            "at start-up, by an admin load or by the repository poller.",
            ["model", "kind"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "inferd_in_flight_requests",
            "Inference requests being served.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._in_flight = BoundCount(self.in_flight)
        self.queue_depth = Gauge(
            "inferd_queue_depth",
            "Requests waiting for a batch, per model version.",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.queue_time = Histogram(
            "inferd_queue_duration_seconds",
            "Time a request waited in the batch queue.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.compute_time = Histogram(
            "inferd_compute_duration_seconds",
            "Time the runtime took for one batch.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "inferd_batch_size",
            "Rows per executed batch.",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )

        self.cache_lookups = Counter(
            "inferd_cache_lookups",
            "Prediction-cache lookups by model and result (hit, miss, bypassed: the "
            "shared store did not answer and the request was computed).",
            ["model", "result"],
            registry=self.registry,
        )
        self.cache_evictions = Counter(
            "inferd_cache_evictions",
            "Entries the in-process prediction cache pushed out to stay in its bound.",
            ["model"],
            registry=self.registry,
        )
        self.cache_bytes = Gauge(
            "inferd_cache_bytes",
            "Bytes held by the in-process prediction cache.",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )

        self.rollout_decisions = Counter(
            "inferd_rollout_decisions",
            "Decisions of guarded rollouts by model and decision (start, advance, hold, "
            "rollback, complete, abort).",
            ["model", "decision"],
            registry=self.registry,
        )
        self.shadow_requests = Counter(
            "inferd_shadow_requests",
            "Requests mirrored to a shadow version, by model, shadow version and outcome "
            "(agree, disagree, dropped: over the shadow's bound, error: it failed).",
            ["model", "version", "outcome"],
            registry=self.registry,
        )
        self.shadow_disagreements = Counter(
            "inferd_shadow_disagreements",
            "Shadow answers that disagree with the primary's, by the most telling reason "
            "(output, datatype, shape, argmax, values).",
            ["model", "version", "reason"],
            registry=self.registry,
        )
        self.shadow_difference = Histogram(
            "inferd_shadow_difference",
            "Largest difference between a shadow's numeric output and the primary's, per "
            "compared output, absolute (measure=abs) and relative (measure=rel).",
            ["model", "version", "measure"],
            buckets=DIFFERENCE_BUCKETS,
            registry=self.registry,
        )

        #: Pipelines' steps and latency targets.
        self.serving = ServingMetrics(self.registry)

    def observer(self, model: str, version: str) -> VersionObserver:
        return VersionObserver(self, model, version)

    def shadow_observer(self, model: str, version: str) -> ShadowObserver:
        return ShadowObserver(self, model, version)

    def observe(self, model: str, version: str, protocol: str, status: str, seconds: float) -> None:
        key = (model, version, protocol, status)
        children = self._children.get(key)
        if children is None:
            # Label lookups take a lock each; a request pays for them once per label set.
            # Latency is observed for answered requests only: no empty histograms for the rest.
            latency = self.latency.labels(model, version, protocol) if status == "ok" else None
            children = self._children[key] = (
                BoundCount(self.requests.labels(*key)),
                None if latency is None else BoundHistogram(latency),
            )
        children[0].add()
        if children[1] is not None:
            children[1].observe(seconds)
        elif status in REJECTIONS:
            self.rejections.labels(REJECTIONS[status]).inc()

    def cache_count(self, model: str, result: str) -> BoundCount:
        """The count of ``model``'s cache lookups with ``result`` (hit, miss, bypassed),
        bound once: a label lookup takes a lock."""
        count = self._lookups.get((model, result))
        if count is None:
            count = self._lookups[(model, result)] = BoundCount(
                self.cache_lookups.labels(model, result)
            )
        return count

    def cache_held(self, model: str, held_bytes: int, evicted: int) -> None:
        """The in-process cache of ``model`` holds ``held_bytes`` after ``evicted`` more
        evictions."""
        held = self._held.get(model)
        if held is None:
            held = self._held[model] = self.cache_bytes.labels(model)
        held.set(held_bytes)
        if evicted:
            self.cache_evictions.labels(model).inc(evicted)

    def rollout_decided(self, model: str, decision: str) -> None:
        self.rollout_decisions.labels(model, decision).inc()

    def load_failed(self, model: str, kind: str) -> None:
        self.load_failures.labels(model, kind).inc()

    def model_failed(self, model: str, version: str) -> None:
        self.model_failures.labels(model, version).inc()

    def forget(self, model: str, version: str) -> None:
        """Drop every series of a version that is no longer served. Under ``--workers``
        (multi-process mode) the series stay: their files cannot be removed (prometheus_client
        warns and keeps them), so they are left as they are until the workers restart."""
        for key in [k for k in self._children if k[:2] == (model, version)]:
            del self._children[key]
            if self.multiprocess_dir is not None:
                continue
            with contextlib.suppress(KeyError):
                self.requests.remove(*key)
            with contextlib.suppress(KeyError):
                self.latency.remove(*key[:3])
        if self.multiprocess_dir is not None:
            return
        for metric in (
            self.queue_depth,
            self.queue_time,
            self.compute_time,
            self.batch_size,
            self.model_failures,
        ):
            with contextlib.suppress(KeyError):
                metric.remove(model, version)
        self.serving.forget(model, version)

    def started(self) -> None:
        """One more inference request in flight."""
        self._in_flight.add(1.0)

    def finished(self) -> None:
        self._in_flight.add(-1.0)

    def render(self) -> bytes:
        return generate_latest(self._readable())

    def collect(self) -> Iterable[Metric]:
        """Every metric family as ``render`` reads it (summed over the workers when there
        are several): what the dashboard's state is made of."""
        return self._readable().collect()

    def _readable(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:
            return self.registry
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return combined


class VersionObserver:
    """What one model version's batcher reports, bound to its labels once."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self._depth = metrics.queue_depth.labels(model, version)
        self._queue = BoundHistogram(metrics.queue_time.labels(model, version))
        self._compute = BoundHistogram(metrics.compute_time.labels(model, version))
        self._batch = BoundHistogram(metrics.batch_size.labels(model, version))

    def depth(self, queued: int) -> None:
        self._depth.set(queued)

    def waited(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def executed(self, rows: int, seconds: float) -> None:
        self._batch.observe(rows)
        self._compute.observe(seconds)


class ShadowObserver:
    """What one model's shadow reports, bound to its labels (model, shadow version).
    Its outcome series exist from the start (at 0); :meth:`forget` removes every series
    it made, when the shadow stops."""

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self._metrics = metrics
        self._labels = (model, version)
        self._outcomes = {
            o: BoundCount(metrics.shadow_requests.labels(model, version, o))
            for o in SHADOW_OUTCOMES
        }
        self._reasons: dict[str, BoundCount] = {}
        self._differences = {
            m: BoundHistogram(metrics.shadow_difference.labels(model, version, m))
            for m in SHADOW_MEASURES
        }

    def outcome(self, outcome: str) -> None:
        """One mirrored request ended so (one of :data:`SHADOW_OUTCOMES`)."""
        self._outcomes[outcome].add()

    def disagreed(self, reason: str) -> None:
        count = self._reasons.get(reason)
        if count is None:
            count = self._reasons[reason] = BoundCount(
                self._metrics.shadow_disagreements.labels(*self._labels, reason)
            )
        count.add()

    def difference(self, measure: str, value: float) -> None:
        self._differences[measure].observe(value)

    def forget(self) -> None:
        if self._metrics.multiprocess_dir is not None:  # as Metrics.forget
            return
        for metric, values in (
            (self._metrics.shadow_requests, SHADOW_OUTCOMES),
            (self._metrics.shadow_disagreements, tuple(self._reasons)),
            (self._metrics.shadow_difference, SHADOW_MEASURES),
        ):
            for value in values:
                with contextlib.suppress(KeyError):
                    metric.remove(*self._labels, value)

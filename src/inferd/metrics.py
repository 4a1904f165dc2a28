"""Prometheus metrics. One registry per service so tests and workers stay apart."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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


class Metrics:
    def __init__(self) -> None:
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
        self.in_flight = Gauge(
            "inferd_in_flight_requests", "Inference requests being served.", registry=self.registry
        )
        self.model_ready = Gauge(
            "inferd_model_ready",
            "1 when the model version is serving.",
            ["model", "version"],
            registry=self.registry,
        )

    def observe(self, model: str, version: str, protocol: str, status: str, seconds: float) -> None:
        self.requests.labels(model, version, protocol, status).inc()
        if status == "ok":
            self.latency.labels(model, version, protocol).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

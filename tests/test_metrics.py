"""Metrics: the fast bound children write exactly what prometheus_client's own calls write."""

from __future__ import annotations

import re

import pytest

from inferd.metrics import Metrics

#: Values on bucket bounds, between them, below the first and past the last.
SAMPLES = [0.0, 0.0004, 0.0005, 0.00051, 0.003, 0.01, 0.7, 2.5, 9.99, 10.0, 11.0, 1e6]


def exposition(metrics: Metrics) -> str:
    """The text format without the creation timestamps, which differ between registries."""
    return re.sub(r"^.*_created.*\n", "", metrics.render().decode(), flags=re.MULTILINE)


def test_request_metrics_match_prometheus_client() -> None:
    fast, reference = Metrics(), Metrics()
    for seconds in SAMPLES:
        fast.observe("m", "1", "rest", "ok", seconds)
        reference.requests.labels("m", "1", "rest", "ok").inc()
        reference.latency.labels("m", "1", "rest").observe(seconds)
    fast.observe("m", "1", "grpc", "deadline_exceeded", 0.0)
    reference.requests.labels("m", "1", "grpc", "deadline_exceeded").inc()
    reference.rejections.labels("deadline").inc()
    fast.started()
    fast.started()
    fast.finished()
    reference.in_flight.inc()
    assert exposition(fast) == exposition(reference)


@pytest.mark.parametrize("rows", [1, 3, 64, 65, 1000])
def test_batch_observer_matches_prometheus_client(rows: int) -> None:
    fast, reference = Metrics(), Metrics()
    observer = fast.observer("m", "1")
    for seconds in SAMPLES:
        observer.waited(seconds)
        observer.executed(rows, seconds)
        reference.queue_time.labels("m", "1").observe(seconds)
        reference.batch_size.labels("m", "1").observe(rows)
        reference.compute_time.labels("m", "1").observe(seconds)
    observer.depth(7)
    reference.queue_depth.labels("m", "1").set(7)
    assert exposition(fast) == exposition(reference)


def test_forget_drops_every_series_of_a_version() -> None:
    metrics = Metrics()
    for version in ("1", "2"):
        metrics.observe("m", version, "rest", "ok", 0.01)
        metrics.observe("m", version, "grpc", "invalid_argument", 0.0)
        observer = metrics.observer("m", version)
        observer.depth(1)
        observer.waited(0.001)
        observer.executed(2, 0.002)
    metrics.forget("m", "1")
    text = exposition(metrics)
    assert 'version="1"' not in text
    assert text.count('version="2"') > 0
    metrics.observe("m", "1", "rest", "ok", 0.01)  # served again: counted from zero
    assert 'inferd_requests_total{model="m",protocol="rest",status="ok",version="1"} 1.0' in (
        exposition(metrics)
    )


def test_shadow_observer_matches_prometheus_client() -> None:
    fast, reference = Metrics(), Metrics()
    observer = fast.shadow_observer("m", "2")
    for outcome in ("agree", "disagree", "disagree", "dropped", "error"):
        observer.outcome(outcome)
    observer.disagreed("argmax")
    observer.disagreed("values")
    observer.disagreed("argmax")
    differences = [0.0, 1e-7, 5e-7, 0.5, 100.0, 1e9]
    for value in differences:
        observer.difference("abs", value)
        observer.difference("rel", value / 10)
    for outcome, count in (("agree", 1), ("disagree", 2), ("dropped", 1), ("error", 1)):
        reference.shadow_requests.labels("m", "2", outcome).inc(count)
    reference.shadow_disagreements.labels("m", "2", "argmax").inc(2)
    reference.shadow_disagreements.labels("m", "2", "values").inc()
    for value in differences:
        reference.shadow_difference.labels("m", "2", "abs").observe(value)
        reference.shadow_difference.labels("m", "2", "rel").observe(value / 10)
    assert exposition(fast) == exposition(reference)
    observer.forget()
    assert "inferd_shadow" not in "".join(
        line for line in exposition(fast).splitlines() if not line.startswith("#")
    )

"""The series of pipelines and latency targets exist per served version and go with it."""

from __future__ import annotations

from inferd.metrics import Metrics
from inferd.serving_metrics import StepSeries, TargetGauges


def test_a_version_that_is_no_longer_served_loses_its_series() -> None:
    metrics = Metrics()
    for version in ("1", "2"):
        gauges = TargetGauges(metrics.serving, "m", version)
        gauges.limit(8)
        gauges.wait(0.01)
        gauges.refused("deadline")
        step = StepSeries(metrics.serving, "m", version, "encode")
        step.answered(0.002)
        step.failed()
    rendered = metrics.render().decode()
    assert 'inferd_batch_limit{model="m",version="1"} 8.0' in rendered
    assert 'inferd_early_refusals_total{model="m",reason="deadline",version="1"} 1.0' in rendered
    assert 'inferd_early_refusals_total{model="m",reason="target",version="1"} 0.0' in rendered
    assert (
        'inferd_pipeline_step_failures_total{model="m",step="encode",version="1"} 1.0' in rendered
    )
    metrics.forget("m", "1")
    rendered = metrics.render().decode()
    assert 'version="1"' not in rendered
    assert 'inferd_batch_limit{model="m",version="2"} 8.0' in rendered
    assert (
        'inferd_pipeline_step_duration_seconds_count{model="m",step="encode",version="2"} 1.0'
        in rendered
    )

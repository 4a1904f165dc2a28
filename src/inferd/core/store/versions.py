"""What a model version's settings resolve to, decided once, when the version loads.

``model.yaml`` leaves most settings to the server's defaults (``performance.*``,
``limits.models.*``). :func:`runtime_options` gives a runtime the few things it needs
(before it loads); :func:`version_settings` gives the service and the batcher the rest
(once the declared or read inputs are known). Both are frozen: nothing re-derives them
per request.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TypeVar

from inferd.core.store.model_config import ModelConfig, TensorConfig
from inferd.errors import ConfigError
from inferd.runtimes.base import RuntimeOptions
from inferd.settings import ModelLimits, PerformanceSettings
from inferd.types import TensorSpec

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class VersionSettings:
    """A serving version's effective settings."""

    #: Rows per batch; 0: the model does not batch (each request runs alone).
    max_batch_size: int
    max_queue_delay_s: float
    preferred_batch_sizes: tuple[int, ...]
    max_queue_size: int
    #: The deadline of a request that brings none.
    timeout_s: float
    max_batch_time_s: float
    instances: int
    intra_op_threads: int
    inter_op_threads: int
    device: str
    precision: str
    allow_nonfinite: bool
    #: NaN/Inf in a float output: ``error`` fails the request, ``encode`` sends them.
    nonfinite_outputs: str
    cache: bool
    #: A call measured under this runs inline when the version is idle (0: never).
    inline_max_compute_s: float = 0.0
    #: ``batching.latency_target_ms`` in seconds; None: off (inferd.core.serving.latency).
    latency_target_s: float | None = None

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0


def batch_dimension(config: ModelConfig, inputs: tuple[TensorSpec, ...]) -> bool:
    """The first dimension of every input is the batch dimension: the model batches unless
    model.yaml says ``max_batch_size: 0``. The one place that decides it."""
    return config.max_batch_size != 0 and all(s.shape and s.shape[0] == -1 for s in inputs)


def _specs(configured: list[TensorConfig] | None, allow: bool) -> tuple[TensorSpec, ...] | None:
    return None if configured is None else tuple(t.spec(allow) for t in configured)


def runtime_options(
    config: ModelConfig,
    artifact: Path,
    performance: PerformanceSettings | None = None,
    *,
    model: str = "",
    version: str = "",
) -> RuntimeOptions:
    """What a runtime of this version receives."""
    performance = performance or PerformanceSettings()
    inputs = _specs(config.inputs, config.allow_nonfinite)
    return RuntimeOptions(
        artifact=artifact,
        model=model,
        version=version,
        device=config.device,
        precision=config.precision,
        intra_op_threads=_given(config.intra_op_threads, performance.intra_op_threads),
        inter_op_threads=_given(config.inter_op_threads, performance.inter_op_threads),
        signature=config.signature,
        inputs=inputs,
        outputs=_specs(config.outputs, config.allow_nonfinite),
        by_row=inputs is not None and batch_dimension(config, inputs),
        parameters=dict(config.parameters),
        model_yaml=config,
    )


def version_settings(
    config: ModelConfig,
    inputs: tuple[TensorSpec, ...],
    performance: PerformanceSettings,
    limits: ModelLimits,
    where: str,
) -> VersionSettings:
    """The settings a version serves with, from model.yaml and the server's defaults."""
    batchable = batch_dimension(config, inputs)
    if config.max_batch_size is None:
        max_batch = performance.max_batch_size if batchable else 0
    elif config.max_batch_size > 0 and not batchable:
        raise ConfigError(
            f"{where}: max_batch_size > 0 needs -1 as the first dimension of every input"
        )
    else:
        max_batch = config.max_batch_size
    delay_ms = config.batching.max_queue_delay_ms
    target_ms = config.batching.latency_target_ms
    if target_ms is not None and _given(delay_ms, performance.batch_timeout_ms) >= target_ms:
        raise ConfigError(
            f"{where}: batching.latency_target_ms ({target_ms:g}) must be above the queue "
            f"delay ({_given(delay_ms, performance.batch_timeout_ms):g} ms)"
        )
    return VersionSettings(
        max_batch_size=max_batch,
        max_queue_delay_s=_given(delay_ms, performance.batch_timeout_ms) / 1000,
        preferred_batch_sizes=tuple(config.batching.preferred_batch_sizes),
        max_queue_size=config.batching.max_queue_size or performance.max_queue_size,
        timeout_s=config.timeout_s or performance.inference_timeout_s,
        max_batch_time_s=config.max_batch_time_s or limits.max_batch_time_s,
        instances=config.instances,
        intra_op_threads=_given(config.intra_op_threads, performance.intra_op_threads),
        inter_op_threads=_given(config.inter_op_threads, performance.inter_op_threads),
        device=config.device,
        precision=config.precision,
        allow_nonfinite=config.allow_nonfinite,
        nonfinite_outputs=config.nonfinite_outputs,
        cache=config.cache.enabled,
        inline_max_compute_s=performance.inline_max_compute_us / 1e6,
        latency_target_s=None if target_ms is None else target_ms / 1000,
    )


def _given(value: T | None, default: T) -> T:
    return default if value is None else value

"""Building a version: reading its specs, building its runtime and batcher, warming it up.

:meth:`Loader.build` turns a repository entry's version into a :class:`LoadedVersion`
ready to serve, or raises (a :class:`~inferd.errors.ConfigError` for a configuration
mistake, :class:`~inferd.core.store.failures.WarmupFailed` when warm-up fails, anything
else the runtime raised). It keeps nothing: the manager decides what serves, and starts
and retires what it builds. It runs in a worker thread (loading a runtime blocks).

Inputs and outputs come from model.yaml, else from the artifact. With ``warmup`` on, one
request of zeros runs before serving (a streaming model runs to its first partial) and
its outputs are checked; a model that may run inline then gets a few timed calls whose
mean seeds the batcher's measured call cost, so a new version is judged like an old one.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from inferd.core.cache import folder_digest, version_digest
from inferd.core.serving.batcher import INLINE_MIN_SAMPLES
from inferd.core.serving.classification import read_labels
from inferd.core.serving.decoupled import GeneratorRunner
from inferd.core.serving.latency import batcher_class
from inferd.core.serving.outputs import checked_run, output_problems
from inferd.core.serving.pipeline_load import Resolver, load_pipeline
from inferd.core.serving.reshape import has_reshape, reshaped
from inferd.core.serving.sequences import Run, Sequences
from inferd.core.serving.stats import VersionStats
from inferd.core.store.failures import WarmupFailed, classify
from inferd.core.store.loaded import LoadedVersion
from inferd.core.store.model_config import check_declared_names
from inferd.core.store.repository import ModelEntry, VersionEntry
from inferd.core.store.sequence_config import SequenceBatchingConfig
from inferd.core.store.versions import VersionSettings, runtime_options, version_settings
from inferd.errors import ConfigError
from inferd.metrics import Metrics
from inferd.runtimes.base import Runtime, runtime_class
from inferd.settings import ModelLimits, PerformanceSettings
from inferd.types import DATATYPE_TO_NUMPY, TensorSpec

log = logging.getLogger("inferd.models")


def _specs(
    configured: list[Any] | None,
    read: tuple[TensorSpec, ...] | None,
    allow: bool,
    kind: str,
    where: str,
) -> tuple[TensorSpec, ...]:
    if configured is not None:
        return tuple(t.spec(allow) for t in configured)
    if read is None:
        raise ConfigError(f"{where}: declare {kind} in model.yaml (the artifact does not say)")
    return tuple(dataclasses.replace(s, allow_nonfinite=allow) for s in read)


def _version_files(entry: ModelEntry, version: VersionEntry) -> Path:
    """What a version may read: its version folder, or the file of a one-file repository."""
    folder = (entry.path / version.name).resolve()
    return folder if version.artifact.is_relative_to(folder) else version.artifact


def check_traffic(entry: ModelEntry, wanted: tuple[VersionEntry, ...]) -> None:
    """Warn when model.yaml's split names a version the version policy does not serve:
    that share goes to the split's other versions (see inferd.core.traffic.router)."""
    names = [v.name for v in wanted]
    unknown = [v for v, w in (entry.config.traffic or {}).items() if w and v not in names]
    if unknown:
        log.warning(
            "model '%s': %s: traffic names versions %s, which are not served (the version "
            "policy serves %s); their share goes to the other versions of the split",
            entry.name,
            entry.config_file,
            unknown,
            names,
        )


def _warmup_inputs(inputs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray[Any, Any]]:
    arrays = {}
    for spec in inputs:
        shape = tuple(1 if dim < 0 else dim for dim in spec.shape)
        dtype = DATATYPE_TO_NUMPY[spec.datatype]
        array = np.zeros(shape, dtype=dtype)
        if spec.datatype == "BYTES":
            array[...] = b""
        arrays[spec.name] = array
    return arrays


def _warm_up(
    runtime: Runtime,
    inputs: dict[str, np.ndarray[Any, Any]],
    infer: Callable[[dict[str, np.ndarray[Any, Any]]], dict[str, np.ndarray[Any, Any]]],
) -> dict[str, np.ndarray[Any, Any]]:
    """One request before serving, its outputs; a streaming model runs to its first partial."""
    if not runtime.decoupled:
        return infer(inputs)
    partials = runtime.stream(inputs)
    try:
        return next(partials, {})
    finally:
        close = getattr(partials, "close", None)
        if close is not None:
            close()


#: Timed warm-up calls stop once they took this long together (a model this slow per
#: call never runs inline anyway).
TIMED_WARMUP_S: Final = 0.05


def _timed_calls(
    infer: Callable[[dict[str, np.ndarray[Any, Any]]], dict[str, np.ndarray[Any, Any]]],
    inputs: dict[str, np.ndarray[Any, Any]],
    inline_limit_s: float,
) -> float | None:
    """The median time of a few more warm-up calls, when the model may run inline (its
    measurement seeds the batcher's, so a new version is judged like an old one); None
    when inline runs are off or the calls are too slow to matter. The median, not the
    mean: a framework that optimizes a model on its first calls (TorchScript's profiling
    executor) makes one of them many times slower than the rest."""
    if inline_limit_s <= 0:
        return None
    spent = 0.0
    times = []
    for _ in range(INLINE_MIN_SAMPLES):
        started = time.perf_counter()
        infer(inputs)
        times.append(time.perf_counter() - started)
        spent += times[-1]
        if spent > TIMED_WARMUP_S:
            return None
    return statistics.median(times)


def _sequences(
    config: SequenceBatchingConfig,
    runtime: Runtime,
    infer: Callable[[dict[str, np.ndarray[Any, Any]]], dict[str, np.ndarray[Any, Any]]],
    settings: VersionSettings,
    outputs: tuple[TensorSpec, ...],
    model: str,
    where: str,
) -> Sequences:
    """The sequence batcher of a version (core/serving/sequences.py)."""
    if runtime.decoupled:
        raise ConfigError(f"{where}: sequence_batching is not supported for a streaming model")
    run: Run
    if config.state:
        stateful = getattr(runtime, "infer_states", None)
        if stateful is None:
            raise ConfigError(f"{where}: sequence_batching.state is for Python models")
        run = stateful
    else:

        def run(arrays: dict[str, np.ndarray[Any, Any]], states: Any) -> Any:
            return infer(arrays)

    return Sequences(
        config,
        model=model,
        batching=settings.batching,
        max_batch_size=settings.max_batch_size,
        instances=settings.instances,
        outputs=outputs,
        run=run,
    )


class Loader:
    """Builds the versions of one server's models (see the module docstring).

    ``resolve``: the served version of a model (the manager's ``resolve``), for the steps
    of a pipeline.
    """

    def __init__(
        self,
        performance: PerformanceSettings,
        limits: ModelLimits,
        metrics: Metrics | None,
        resolve: Resolver,
    ) -> None:
        self._performance = performance
        self._limits = limits
        self._metrics = metrics
        self._resolve = resolve

    def build(self, entry: ModelEntry, version: VersionEntry, where: str) -> LoadedVersion:
        """``version`` of ``entry`` built, checked and warmed up (``where`` names it in
        messages); not started."""
        config = entry.config
        if config.pipeline is not None:
            return load_pipeline(
                self._resolve,
                entry,
                version,
                where,
                performance=self._performance,
                limits=self._limits,
                metrics=self._metrics,
            )
        options = runtime_options(
            config, version.artifact, self._performance, model=entry.name, version=version.name
        )
        # Read before the runtime loads: a file changed meanwhile reloads the version anyway.
        files = folder_digest(_version_files(entry, version)) if config.cache.enabled else ""
        runtime = runtime_class(version.runtime)(options)
        runtime.load()
        read = runtime.signature()
        sequenced = config.sequence_batching
        controls = [c.name for c in sequenced.control_input] if sequenced else []
        if read is not None:
            for kind, declared, found in (
                ("inputs", config.inputs, read.inputs),
                ("outputs", config.outputs, read.outputs),
            ):
                if declared is not None:
                    check_declared_names(
                        kind,
                        [t.name for t in declared] + (controls if kind == "inputs" else []),
                        [s.name for s in found],
                        entry.config_file,
                        f"{version.name}/{version.artifact.name}",
                    )
        inputs = _specs(
            config.inputs, read.inputs if read else None, config.allow_nonfinite, "inputs", where
        )
        outputs = _specs(
            config.outputs, read.outputs if read else None, config.allow_nonfinite, "outputs", where
        )
        settings = version_settings(config, inputs, self._performance, self._limits, where)
        infer = reshaped(config, settings.batching, runtime.infer)
        if runtime.decoupled and has_reshape(config):
            raise ConfigError(f"{where}: reshape is not supported for a streaming model")
        labels = read_labels(entry.path, config.outputs or (), entry.config_file)
        sequences = None
        warm = infer
        if sequenced is not None:
            sequences = _sequences(sequenced, runtime, infer, settings, outputs, entry.name, where)
            warm = sequences.warm_run  # its requests go to the sequence batcher, not the batcher
        if config.warmup:
            try:
                produced = _warm_up(runtime, _warmup_inputs(inputs), warm)
            except Exception as exc:
                raise WarmupFailed(f"{where}: warm-up failed: {classify(exc)[1]}") from exc
            # A streaming model's partial may carry some of the outputs only.
            problems = [] if runtime.decoupled else output_problems(outputs, produced)
            if problems:
                raise WarmupFailed(f"{where}: at warm-up, {'; '.join(problems)}")
        timed = (
            _timed_calls(infer, _warmup_inputs(inputs), settings.inline_max_compute_s)
            if config.warmup and runtime.inline_safe and not runtime.decoupled and sequences is None
            else None
        )
        stats = VersionStats(entry.name, version.name)
        batcher = batcher_class(settings, self._metrics, entry.name, version.name)(
            checked_run(entry.name, version.name, outputs, infer),
            stats=stats,
            max_batch_size=settings.max_batch_size,
            max_queue_delay_s=settings.max_queue_delay_s,
            preferred_batch_sizes=settings.preferred_batch_sizes,
            max_queue_size=settings.max_queue_size,
            instances=settings.instances,
            prepare_thread=runtime.prepare_thread,
            observer=self._metrics.observer(entry.name, version.name) if self._metrics else None,
            max_batch_time_s=settings.max_batch_time_s,
            inline_max_compute_s=settings.inline_max_compute_s if runtime.inline_safe else 0.0,
            cost_by_cpu=runtime.computes_in_caller,
        )
        if timed is not None:
            batcher.seed_call_cost(timed)
        generator = (
            GeneratorRunner(
                runtime.stream,
                name=entry.name,
                instances=settings.instances,
                prepare_thread=runtime.prepare_thread,
            )
            if runtime.decoupled
            else None
        )
        return LoadedVersion(
            entry.name,
            version.name,
            version.runtime,
            config,
            settings,
            inputs,
            outputs,
            runtime,
            batcher,
            stats,
            generator,
            version_digest(files, version.runtime, config, inputs, outputs) if files else "",
            labels,
            sequences,
        )

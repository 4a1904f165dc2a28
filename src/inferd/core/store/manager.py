"""Loading, serving and unloading model versions.

Every model version moves through ``LOADING -> READY -> UNLOADING -> UNAVAILABLE`` or ends
in ``FAILED`` with its reason. A serving version whose batch ran past its
``max_batch_time_s`` is reported ``UNHEALTHY`` (with the reason) until that batch returns;
the server's readiness does not depend on it, the model's does. A model that fails does not take the others down. A reload
loads the new versions beside the old ones, switches the served table in one assignment,
then drains and unloads what is no longer served, so no request fails during a swap. A
reload that fails to load a version leaves what served before serving: a broken new
version never takes a model down. Loads and unloads run one at a time (one lock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Final

import numpy as np

from inferd.core.cache import ResponseCache, folder_digest, version_digest
from inferd.core.plan import BARE, ServingPlan
from inferd.core.serving.batcher import INLINE_MIN_SAMPLES, Batcher
from inferd.core.serving.classification import read_labels
from inferd.core.serving.decoupled import GeneratorRunner
from inferd.core.serving.latency import batcher_class
from inferd.core.serving.outputs import checked_run, output_problems
from inferd.core.serving.pipeline import PipelineRunner
from inferd.core.serving.pipeline_load import load_pipeline, load_waves
from inferd.core.serving.reshape import has_reshape, reshaped
from inferd.core.serving.sequences import Run, Sequences
from inferd.core.serving.stats import VersionStats
from inferd.core.store.failures import CONFIG_CLASSES, WarmupFailed, classify, public_reason
from inferd.core.store.load_override import OverrideError, overridden
from inferd.core.store.model_config import ModelConfig, check_declared_names
from inferd.core.store.repository import (
    ModelEntry,
    Repository,
    VersionEntry,
    check_name,
    natural_key,
)
from inferd.core.store.sequence_config import SequenceBatchingConfig
from inferd.core.store.versions import VersionSettings, runtime_options, version_settings
from inferd.errors import ConfigError, NotFound, Unavailable
from inferd.metrics import Metrics
from inferd.runtimes.base import PLATFORMS, Runtime, runtime_class
from inferd.settings import ModelLimits, PerformanceSettings
from inferd.types import DATATYPE_TO_NUMPY, TensorSpec

log = logging.getLogger("inferd.models")


class State(enum.Enum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"
    FAILED = "FAILED"
    UNHEALTHY = "UNHEALTHY"


@dataclasses.dataclass(slots=True)
class LoadedVersion:
    """A version that is serving: its runtime, declared tensors and batcher."""

    model: str
    version: str
    runtime_name: str
    config: ModelConfig
    #: What the version's settings resolved to at load (the service and batcher read these).
    settings: VersionSettings
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    runtime: Runtime
    #: A pipeline's runs its steps (inferd.core.serving.pipeline).
    batcher: Batcher | PipelineRunner
    stats: VersionStats
    #: Set for a streaming (decoupled) model: requests go here, not to the batcher.
    generator: GeneratorRunner | None = None
    #: What can change its answers (inferd.core.cache.version_digest), computed at load for
    #: models that cache ("" otherwise).
    digest: str = ""
    #: Output -> its labels (``label_filename``), for the classification extension.
    labels: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    #: Set for a model with sequence batching: requests go here, not to the batcher.
    sequences: Sequences | None = None
    #: The optional steps its requests pass through (core/plan.py), set by the service
    #: when the version starts serving and when its model's shadow or rollout changes.
    plan: ServingPlan = BARE

    @property
    def max_batch_size(self) -> int:
        return self.settings.max_batch_size

    @property
    def platform(self) -> str:
        return PLATFORMS[self.runtime_name]

    def output_spec(self, name: str) -> TensorSpec | None:
        return next((s for s in self.outputs if s.name == name), None)


@dataclasses.dataclass(slots=True)
class VersionStatus:
    model: str
    version: str
    state: State
    #: The full reason: for the log and admin callers only.
    reason: str = ""
    #: A load failure's fixed class (``config_error``...), empty when none.
    kind: str = ""

    def public_reason(self) -> str:
        """What anyone may see: a load failure's class, or a fixed reason ('unloaded')."""
        return public_reason(self.kind) if self.kind else self.reason


@dataclasses.dataclass(slots=True)
class _Model:
    entry: ModelEntry | None
    served: dict[str, LoadedVersion]
    status: dict[str, VersionStatus]
    error: str = ""
    wanted: bool = True
    error_kind: str = ""
    latest: LoadedVersion | None = None
    #: A reload failed and what served before serves on: its FAILED versions do not make
    #: the server unready.
    fell_back: bool = False

    def serve(self, served: dict[str, LoadedVersion]) -> None:
        """Switch the served table (one assignment) and the version ``latest`` names."""
        self.latest = served[max(served, key=natural_key)] if served else None
        self.served = served


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


def _check_traffic(entry: ModelEntry, wanted: tuple[VersionEntry, ...]) -> None:
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


def _unloading(model: _Model, loaded: LoadedVersion) -> VersionStatus | None:
    """Mark a version that no longer serves UNLOADING (unless a reload serves it anew);
    its status, if it has one."""
    status = model.status.get(loaded.version)
    if status is not None and status.state is State.READY and loaded.version not in model.served:
        status.state = State.UNLOADING
    return status


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
    """The mean time of a few more warm-up calls, when the model may run inline (its
    measurement seeds the batcher's, so a new version is judged like an old one); None
    when inline runs are off or the calls are too slow to matter."""
    if inline_limit_s <= 0:
        return None
    spent = 0.0
    for _ in range(INLINE_MIN_SAMPLES):
        started = time.perf_counter()
        infer(inputs)
        spent += time.perf_counter() - started
        if spent > TIMED_WARMUP_S:
            return None
    return spent / INLINE_MIN_SAMPLES


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


class ModelManager:
    def __init__(
        self,
        repository: Repository | None,
        performance: PerformanceSettings,
        metrics: Metrics | None = None,
        limits: ModelLimits | None = None,
        cache: ResponseCache | None = None,
    ) -> None:
        self._repository = repository
        self._performance = performance
        self._limits = limits or ModelLimits()
        self._metrics = metrics
        self._cache = cache
        self._models: dict[str, _Model] = {}
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[str, ModelConfig | None], None]] = []

    def on_serve(self, listener: Callable[[str, ModelConfig | None], None]) -> None:
        """Call ``listener(model, config)`` whenever a model's served table is switched by
        a (re)load (with the model.yaml it loaded), or the model is unloaded (None); called
        in the same step as the switch."""
        self._listeners.append(listener)

    def _switched(self, name: str, config: ModelConfig | None) -> None:
        for listener in self._listeners:
            listener(name, config)

    # -- queries ---------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return sorted(self._models)

    @property
    def repository(self) -> Repository | None:
        return self._repository

    def ready(self) -> bool:
        """Every model that should serve is serving."""
        return all(
            not m.error
            and m.served
            and all(
                s.state is State.READY or (m.fell_back and s.state is State.FAILED)
                for s in m.status.values()
            )
            for m in self._models.values()
            if m.wanted
        )

    def knows(self, name: object) -> bool:
        """``name`` is a model of the repository (served or not)."""
        return isinstance(name, str) and name in self._models

    def versions(self, name: str) -> list[str]:
        model = self._model(name)
        return sorted(model.served, key=natural_key)

    def _model(self, name: str) -> _Model:
        check_name("model", name)
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"model '{name}' is not known; known models: {self.model_names()}")
        return model

    def served(self, name: str) -> dict[str, LoadedVersion]:
        """The versions of a model that serve now (not empty: Unavailable otherwise)."""
        model = self._model(name)
        if not model.served:
            raise self._unavailable(name, model)
        return model.served

    def _unavailable(self, name: str, model: _Model) -> Unavailable:
        reason = (public_reason(model.error_kind) if model.error else "") or "; ".join(
            f"version {s.version}: {s.state.value} {s.public_reason()}".strip()
            for s in model.status.values()
        )
        return Unavailable(f"model '{name}' is not ready ({reason or 'not loaded'})")

    def resolve(self, name: str, version: str | None = None) -> LoadedVersion:
        """The serving version ``version`` of a model, the latest when None (labels and
        traffic splits are the router's: :mod:`inferd.core.traffic.router`)."""
        model = self._model(name)
        if not model.served:
            raise self._unavailable(name, model)
        if version is None or version == "":
            assert model.latest is not None  # set with every non-empty served table
            return model.latest
        check_name("version", version)
        loaded = model.served.get(version)
        if loaded is None:
            status = model.status.get(version)
            if status is not None:
                raise Unavailable(
                    f"model '{name}' version '{version}' is {status.state.value} "
                    f"{status.public_reason()}".strip()
                )
            raise NotFound(
                f"model '{name}' has no version '{version}'; serving {self.versions(name)}"
            )
        return loaded

    def index(self) -> list[VersionStatus]:
        """Every model and version of the repository with its state (repository extension)."""
        rows: list[VersionStatus] = []
        names = set(self._models)
        if self._repository is not None:
            names.update(self._repository.model_names())
        for name in sorted(names):
            model = self._models.get(name)
            if model is None:
                rows.append(VersionStatus(name, "", State.UNAVAILABLE, "not loaded"))
            elif model.error:
                rows.append(VersionStatus(name, "", State.FAILED, model.error, model.error_kind))
            else:
                rows.extend(
                    self._health(model, status)
                    for status in sorted(
                        model.status.values(), key=lambda s: natural_key(s.version)
                    )
                )
        return rows

    @staticmethod
    def _health(model: _Model, status: VersionStatus) -> VersionStatus:
        loaded = model.served.get(status.version)
        if loaded is not None and loaded.batcher.fault is not None:
            return VersionStatus(
                status.model, status.version, State.UNHEALTHY, loaded.batcher.fault
            )
        return status

    # -- lifecycle --------------------------------------------------------------------------

    async def load_all(self) -> None:
        if self._repository is None:
            return
        names = self._repository.model_names()
        for wave in load_waves(self._repository, names):  # a pipeline after its steps
            await asyncio.gather(*(self.load(name) for name in wave))

    async def load(
        self,
        name: str,
        rebuild: Collection[str] | None = None,
        *,
        required: bool = True,
        override: dict[str, Any] | None = None,
    ) -> list[str]:
        """(Re)load a model from the repository. Failures are recorded in the index and
        returned as reasons; the versions that loaded serve either way.

        ``rebuild``: the versions to load anew; the other versions the policy selects keep
        their serving instance (None: every version loads anew). A version that fails keeps
        its old instance serving, and while one fails the versions the policy drops serve
        on. ``required``: the server's readiness waits for this model; when False (a
        model the repository poller found) it counts once it serves.
        """
        if self._repository is None:
            raise NotFound("no model repository is configured")
        check_name("model", name)
        async with self._lock:
            old = self._models.get(name)
            required = required or (old is not None and old.wanted)
            try:
                entry = self._repository.read(name)
                if override is not None:
                    entry = overridden(entry, override)
                wanted = entry.served_versions()
                _check_traffic(entry, wanted)
            except (NotFound, OverrideError):
                raise
            except Exception as exc:
                kind, reason = classify(exc)
                self._failed(name, f"model '{name}'", kind, reason, exc)
                if old is None or not old.served:
                    self._models[name] = _Model(
                        None, {}, {}, reason, wanted=required, error_kind=kind
                    )
                return [reason]
            previous = old.served if old is not None else {}
            model = _Model(entry, {}, {}, wanted=required)
            if old is not None:
                model.status.update(old.status)
            else:
                self._models[name] = model
            build = [
                v for v in wanted if rebuild is None or v.name in rebuild or v.name not in previous
            ]
            results = await asyncio.gather(
                *(self._load_version(entry, v, model, v.name in previous) for v in build)
            )
            served = {v.name: previous[v.name] for v in wanted if v not in build}
            served.update((v.version, v) for v in results if v is not None)
            failed = [v.name for v, result in zip(build, results, strict=True) if result is None]
            for key in failed:
                if key in previous:  # it keeps serving its old instance
                    served[key] = previous[key]
                    status = model.status[key]
                    model.status[key] = VersionStatus(
                        name, key, State.READY, status.reason, status.kind
                    )
            if failed and previous:  # what the policy drops serves on too
                served = previous | served
                model.fell_back = True
            retired = [v for k, v in previous.items() if served.get(k) is not v]
            model.serve(served)
            kept = {v.name for v in wanted} | set(served)
            model.status = {k: s for k, s in model.status.items() if k in kept}
            model.wanted = required or bool(served)
            self._models[name] = model
            self._switched(name, entry.config)
        for version in retired:
            await self._retire(version, model)
        return [f"version {key}: {model.status[key].reason}" for key in failed]

    def _failed(self, name: str, where: str, kind: str, reason: str, exc: Exception) -> None:
        """Log a load failure (a configuration mistake is its message; anything else keeps
        its traceback) and count it."""
        log.error(
            "%s failed to load (%s): %s",
            where,
            kind,
            reason,
            exc_info=None if kind in CONFIG_CLASSES else exc,
        )
        if self._metrics is not None:
            self._metrics.load_failed(name, kind)

    async def _load_version(
        self, entry: ModelEntry, version: VersionEntry, model: _Model, again: bool = False
    ) -> LoadedVersion | None:
        """Build, warm up and start one version (``again``: it replaces one that serves)."""
        status = VersionStatus(entry.name, version.name, State.LOADING)
        model.status[version.name] = status
        where = f"model '{entry.name}' version '{version.name}'"
        try:
            loaded = await asyncio.to_thread(self._build, entry, version, where)
        except Exception as exc:
            kind, reason = classify(exc)
            status.state, status.reason, status.kind = State.FAILED, reason, kind
            self._failed(entry.name, where, kind, reason, exc)
            return None
        loaded.batcher.start()
        if loaded.sequences is not None:
            loaded.sequences.start()
        status.state = State.READY
        log.info(
            "%s %s (%s, max_batch_size=%d)",
            where,
            "reloaded: the new load serves, the old one drains" if again else "ready",
            version.runtime,
            loaded.settings.max_batch_size,
        )
        return loaded

    def _build(self, entry: ModelEntry, version: VersionEntry, where: str) -> LoadedVersion:
        config = entry.config
        if config.pipeline is not None:
            return load_pipeline(
                self,
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

    async def _retire(
        self, loaded: LoadedVersion, model: _Model, grace_s: float | None = None
    ) -> None:
        """Drain and unload a version that no longer serves, waiting at most ``grace_s``
        (``limits.models.unload_grace_s`` by default) for its work."""
        status = _unloading(model, loaded)
        grace = self._limits.unload_grace_s if grace_s is None else grace_s
        finished = await loaded.batcher.close(grace)
        if loaded.sequences is not None:
            await loaded.sequences.close()
        if loaded.generator is not None:
            finished = await loaded.generator.close(grace) and finished
        if self._cache is not None:
            self._cache.forget(loaded)
        if finished:
            await asyncio.to_thread(loaded.runtime.unload)
        else:
            # The runtime is still in use by the abandoned thread: it is dropped, not unloaded.
            log.error(
                "model '%s' version '%s': a model thread never returned; runtime dropped",
                loaded.model,
                loaded.version,
            )
        if status is not None and loaded.version not in model.served:
            status.state = State.UNAVAILABLE
            status.reason = "unloaded"
        async with self._lock:  # not while a load builds the version anew (its series)
            current = self._models.get(loaded.model)
            if self._metrics is not None and (
                current is None or loaded.version not in current.served
            ):
                self._metrics.forget(loaded.model, loaded.version)
        if loaded.version in model.served:  # replaced by a reload, which said so
            log.debug(
                "model '%s' version '%s': the old load unloaded", *(loaded.model, loaded.version)
            )
        else:
            log.info("model '%s' version '%s' unloaded", loaded.model, loaded.version)

    async def unload(self, name: str, grace_s: float | None = None) -> None:
        """Stop serving a model and unload its versions (see :meth:`_retire` for ``grace_s``).
        The server stays ready: a model unloaded is no longer one that should serve."""
        async with self._lock:
            model = self._model(name)  # a load that held the lock may have replaced it
            retired = list(model.served.values())
            model.serve({})
            for loaded in retired:  # in the same step: no request sees it READY, not served
                _unloading(model, loaded)
            self._switched(name, None)
            model.error = ""
            model.wanted = False
        await asyncio.gather(*(self._retire(loaded, model, grace_s) for loaded in retired))

    async def close(self, grace_s: float | None = None) -> None:
        """Drain and unload everything (shutdown), all models at once, each waiting at
        most ``grace_s`` for its work."""
        await asyncio.gather(*(self.unload(name, grace_s) for name in list(self._models)))

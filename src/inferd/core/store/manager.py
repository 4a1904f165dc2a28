"""Keeping model versions: the state table, loads, swaps and unloads.

Versions are built by the loader (:mod:`inferd.core.store.loader`); their states are those
of :mod:`inferd.core.store.loaded`. A serving version whose batch ran past its
``max_batch_time_s`` is reported ``UNHEALTHY`` (with the reason) until that batch returns;
the server's readiness does not depend on it, the model's does. A model that fails does
not take the others down. A reload loads the new versions beside the old ones, switches
the served table in one assignment, then drains and unloads what is no longer served, so
no request fails during a swap. A reload that fails to load a version leaves what served
before serving: a broken new version never takes a model down. Loads and unloads run one
at a time (one lock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Collection
from typing import Any

from inferd.core.cache import ResponseCache
from inferd.core.serving.pipeline_load import load_waves
from inferd.core.store.failures import CONFIG_CLASSES, classify, public_reason
from inferd.core.store.load_override import OverrideError, overridden
from inferd.core.store.loaded import LoadedVersion, State, VersionStatus
from inferd.core.store.loader import Loader, check_traffic
from inferd.core.store.model_config import ModelConfig
from inferd.core.store.repository import (
    ModelEntry,
    Repository,
    VersionEntry,
    check_name,
    natural_key,
)
from inferd.errors import NotFound, Unavailable
from inferd.metrics import Metrics
from inferd.settings import ModelLimits, PerformanceSettings

log = logging.getLogger("inferd.models")


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


def _unloading(model: _Model, loaded: LoadedVersion) -> VersionStatus | None:
    """Mark a version that no longer serves UNLOADING (unless a reload serves it anew);
    its status, if it has one."""
    status = model.status.get(loaded.version)
    if status is not None and status.state is State.READY and loaded.version not in model.served:
        status.state = State.UNLOADING
    return status


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
        self._limits = limits or ModelLimits()
        self._metrics = metrics
        self._loader = Loader(performance, self._limits, metrics, self.resolve)
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
        model = self._models.get(name)
        if model is None:
            check_name("model", name)  # a known model's name is valid
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
                check_traffic(entry, wanted)
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
            loaded = await asyncio.to_thread(self._loader.build, entry, version, where)
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

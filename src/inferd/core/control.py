"""The control plane: load and unload models, the repository index, traffic splits, shadow
traffic and guarded rollouts -- what changes which versions serve and how, at run time.

Requests never pass through here: a change is resolved into each serving version's plan
(:func:`inferd.core.plan.plan_for`), which the data plane (core/service.py) runs."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Mapping
from typing import Any, Final

from inferd.core.cache import ResponseCache
from inferd.core.plan import plan_for
from inferd.core.store.load_override import parse_load_parameters
from inferd.core.store.loaded import State
from inferd.core.store.manager import ModelManager
from inferd.core.store.model_config import ModelConfig, parse_shadow
from inferd.core.traffic.rollouts import Rollouts
from inferd.core.traffic.router import Router
from inferd.core.traffic.shadow import Arrays, Shadows
from inferd.errors import InvalidArgument, ModelLoadError, NotFound, Unavailable
from inferd.metrics import Metrics
from inferd.settings import Settings
from inferd.tensors import as_datatype
from inferd.types import Tensor

log = logging.getLogger("inferd.control")


class ControlPlane:
    """What changes which versions serve a model, and how: loads, traffic, shadow, rollouts.
    Each change replans the model's serving versions; a worker of several refuses changes
    that it alone would keep (``server.workers``)."""

    def __init__(
        self,
        settings: Settings,
        manager: ModelManager,
        router: Router,
        metrics: Metrics,
        cache: ResponseCache | None = None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.router = router
        self.cache = cache
        #: Guarded rollouts: they move the router's splits.
        self.rollouts = Rollouts(router, manager.versions, metrics, on_change=self._replan)
        self.shadows = Shadows(self._shadow_outputs, metrics)
        manager.on_serve(self._serve_shadow)

    def repository_index(
        self, full: bool = False, ready_only: bool = False
    ) -> list[dict[str, str]]:
        """Every model and version with its state (``ready_only``: the READY ones). A load
        failure's reason is its fixed class (``load_failed: config_error``) unless ``full``
        (admin callers only)."""
        return [
            {
                "name": s.model,
                "version": s.version,
                "state": s.state.value,
                "reason": s.reason if full else s.public_reason(),
            }
            for s in self.manager.index()
            if not ready_only or s.state is State.READY
        ]

    # -- guarded rollouts (core/traffic/rollout.py) ---------------------------------------------------

    def rollout(self, name: str) -> dict[str, Any]:
        """The model's running rollout, else its last one (NotFound when none)."""
        return self.rollouts.get(name).view()

    def start_rollout(self, name: str, plan: object) -> dict[str, Any]:
        """Start rolling a version of the model out as ``plan`` (a decoded request body)
        says. One process only: with several workers each would move its own split."""
        self._one_process("a rollout")
        return self.rollouts.start(name, plan).view()

    def _one_process(
        self, what: str, instead: str = "set it in model.yaml instead", held: str = "routing"
    ) -> None:
        """Refuse a run-time change that one worker of several would keep to itself (each
        worker has its own router and models: the repository is the way to change all)."""
        workers = self.settings.server.workers
        if workers > 1:
            raise InvalidArgument(
                f"this server runs {workers} worker processes (server.workers), each with its "
                f"own {held}; {what} needs one process ({instead})"
            )

    def abort_rollout(self, name: str) -> dict[str, Any]:
        """Stop the model's running rollout; the stable version takes all the traffic."""
        return self.rollouts.abort(name).view()

    async def load_model(self, name: str, parameters: Mapping[str, Any] | None = None) -> None:
        """Load or reload a model; ``parameters``: the repository extension's load
        parameters (a ``config`` override; files are refused, core/store/load_override.py). One
        process only: a worker of several would load it alone (the repository poller
        reloads every worker)."""
        self._one_process("a load at run time", _BY_POLLER, held="models")
        override = parse_load_parameters(parameters) if parameters else None
        failures = await self.manager.load(name, override=override)
        settle_heap()
        if failures:
            raise ModelLoadError(f"model '{name}' failed to load: {'; '.join(failures)}")

    async def unload_model(self, name: str) -> None:
        """Unload a model; one process only, as :meth:`load_model`."""
        self._one_process("an unload at run time", _BY_POLLER, held="models")
        await self.manager.unload(name)

    # -- shadow traffic (core/traffic/shadow.py) ---------------------------------------------------

    def shadow_state(self, name: str) -> dict[str, Any]:
        """``GET /v2/models/{m}/shadow``: the model's shadow (None when it has none), its
        counts and recent disagreeing examples (users' data: admin callers only)."""
        self.manager.versions(name)  # NotFound for a model the repository does not have
        shadow = self.shadows.get(name)
        if shadow is None:
            return {"model": name, "shadow": None}
        share = self.router.primary_share(name, shadow.version)
        warning = _shadow_warning(name, shadow.version, share) if share else None
        return {
            "model": name,
            "shadow": {**shadow.state(), "primary_share": share, "warning": warning},
        }

    def set_shadow(self, name: str, doc: object) -> dict[str, Any]:
        """``PUT /v2/models/{m}/shadow``: start, change (``{"version", "fraction", ...}``)
        or stop (None) the model's shadow until the model is next loaded."""
        self._one_process("a shadow set at run time")
        served = self.manager.versions(name)
        config = None if doc is None else parse_shadow(doc)
        if config is not None and config.version not in served:
            raise InvalidArgument(
                f"model '{name}' does not serve version '{config.version}'; it serves {served}"
            )
        self.shadows.set(name, config, "api")
        self._replan(name)
        self._warn_shadow(name)
        return self.shadow_state(name)

    def _warn_shadow(self, name: str) -> None:
        """Warn when the model's shadow version also answers requests that name no version:
        its own answers are not mirrored (see inferd.core.traffic.shadow)."""
        shadow = self.shadows.get(name)
        if shadow is not None:
            share = self.router.primary_share(name, shadow.version)
            if share:
                log.warning("%s", _shadow_warning(name, shadow.version, share))

    def _serve_shadow(self, name: str, config: ModelConfig | None) -> None:
        """A (re)loaded model gets the shadow its model.yaml declares (or none), and its
        serving versions their plans; an unloaded one (``config`` None) no shadow."""
        self.shadows.set(name, None if config is None else config.shadow, "model.yaml")
        self._replan(name)
        self._warn_shadow(name)

    def _replan(self, name: str) -> None:
        """Give each serving version of a model the plan of what is on for it now (after a
        switch of its versions, a shadow set or stopped, a rollout started or ended)."""
        try:
            served = self.manager.served(name)
        except (NotFound, Unavailable):
            return  # nothing serves: each version gets its plan when it starts serving
        shadow = self.shadows.get(name)
        rollout = self.rollouts.running.get(name)
        for loaded in served.values():
            loaded.plan = plan_for(loaded, self.cache, shadow, rollout)

    async def _shadow_outputs(self, model: str, version: str, arrays: Arrays) -> dict[str, Tensor]:
        """A mirrored request: ``arrays`` through the shadow version's batcher, its outputs
        in their declared datatypes."""
        loaded = self.router.named(model, version)
        if loaded.generator is not None:
            raise InvalidArgument(f"model '{model}' version '{version}' streams its outputs")
        results = await loaded.batcher.submit(arrays, time.monotonic() + loaded.settings.timeout_s)
        return {
            spec.name: Tensor(
                spec.name, spec.datatype, as_datatype(results[spec.name], spec.datatype)
            )
            for spec in loaded.outputs
            if spec.name in results
        }

    # -- traffic ----------------------------------------------------------------------------

    def traffic(self, name: str) -> dict[str, Any]:
        """A model's traffic split (None: requests that name no version get the latest)
        and the versions it serves."""
        return {
            "model": name,
            "traffic": self.router.traffic(name),
            "versions": self.manager.versions(name),
        }

    def set_traffic(self, name: str, weights: Mapping[str, int] | None) -> dict[str, Any]:
        self._one_process("a split set at run time")
        self.router.set_traffic(name, weights)
        log.info("model '%s': traffic set to %s", name, weights)
        return self.traffic(name)


#: How a model changes in every worker at once.
_BY_POLLER: Final = (
    "change the repository and let models.poll_interval_s reload every worker, or restart"
)


def _shadow_warning(model: str, version: str, share: int) -> str:
    return (
        f"model '{model}': shadow version '{version}' also takes {share} % of the primary "
        "traffic; those answers are not mirrored (only the other versions' are): shadow a "
        "version that takes no traffic, or move it out of the split"
    )


def settle_heap() -> None:
    """Move what startup allocated (frameworks, models) out of the collector's sight.

    With torch, onnxruntime and grpc imported a process holds a few hundred thousand
    long-lived objects; every full collection walked them all (~100 ms on this class of
    machine, a stall of every request in flight). Frozen objects are never scanned again;
    only what requests allocate is.
    """
    gc.collect()
    gc.freeze()

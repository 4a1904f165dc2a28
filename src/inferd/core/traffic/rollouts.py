"""The rollouts of a server: at most one running per model, each driven by a task of its own.

In memory only: a restart forgets them, and each model starts from the split of its
``model.yaml``. The service records every answered request of a rollout's canary and
stable versions in its windows, through their serving plans (core/plan.py): a model
without a rollout costs nothing per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from inferd.core.store.repository import natural_key
from inferd.core.traffic.rollout import Rollout, State, Traffic
from inferd.core.traffic.rollout_plan import parse_plan
from inferd.errors import Conflict, InvalidArgument, NotFound
from inferd.metrics import Metrics

log = logging.getLogger("inferd.rollout")


def stable_version(model: str, canary: str, split: dict[str, int] | None, served: list[str]) -> str:
    """What answers requests without a version now, besides ``canary``: the split's main
    version (the highest weight; the later version on a tie), or the latest without a split.
    ``served`` is in natural order."""
    if split is None:
        if served[-1] == canary:
            raise InvalidArgument(
                f"version '{canary}' of model '{model}' is the latest and the model has no "
                "traffic split, so it already answers every request that names no version; "
                f'pin the stable version first (PUT /v2/models/{model}/traffic {{"<stable>": '
                "100}, or traffic: in model.yaml), then roll out"
            )
        return served[-1]
    others = [(w, natural_key(v), v) for v, w in split.items() if v != canary and w > 0]
    if not others:
        raise InvalidArgument(
            f"version '{canary}' of model '{model}' already takes all the traffic ({split})"
        )
    return max(others)[2]


class Rollouts:
    """Starts, shows and aborts rollouts; :meth:`close` stops their tasks."""

    def __init__(
        self,
        traffic: Traffic,
        served: Callable[[str], list[str]],
        metrics: Metrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        #: Running rollouts by model.
        self.running: dict[str, Rollout] = {}
        #: Called with the model's name when its rollout starts or stops (the service
        #: moves the rollout's windows into or out of its versions' serving plans).
        self._on_change = on_change
        self._traffic = traffic
        self._served = served
        self._metrics = metrics
        self._clock = clock
        self._wall = wall
        self._last: dict[str, Rollout] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, model: str, doc: object) -> Rollout:
        """Check the plan ``doc`` (a decoded request body), set the first step's split and
        start driving the rollout. A running rollout of the model is a conflict."""
        served = self._served(model)  # NotFound for a model that is not known
        plan = parse_plan(doc)
        running = self.running.get(model)
        if running is not None:
            raise Conflict(
                f"a rollout of model '{model}' to version '{running.canary}' is running; "
                f"DELETE /v2/models/{model}/rollout stops it"
            )
        if plan.to not in served:
            raise InvalidArgument(
                f"version '{plan.to}' of model '{model}' is not served; serving {served}"
            )
        stable = stable_version(model, plan.to, self._traffic.traffic(model), served)
        rollout = Rollout(
            model,
            plan,
            stable,
            self._traffic,
            self._served,
            self._metrics,
            self._clock,
            self._wall,
        )
        rollout.begin()
        self.running[model] = self._last[model] = rollout
        self._tasks[model] = asyncio.create_task(self._drive(rollout), name=f"rollout:{model}")
        self._changed(model)
        return rollout

    def get(self, model: str) -> Rollout:
        """The model's running rollout, else its last one."""
        self._served(model)
        rollout = self._last.get(model)
        if rollout is None:
            raise NotFound(f"model '{model}' has had no rollout since the server started")
        return rollout

    def abort(self, model: str) -> Rollout:
        """Stop the model's running rollout (the stable version takes all the traffic); a
        rollout that has ended is left as it is."""
        rollout = self.get(model)
        if rollout.state is State.RUNNING:
            rollout.abort("stopped by request")
            self._stop(model)
        return rollout

    async def close(self) -> None:
        """Stop driving every rollout (the server stops); splits stay as they are."""
        tasks = list(self._tasks.values())
        models = list(self.running)
        self.running.clear()
        self._tasks.clear()
        for model in models:
            self._changed(model)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _stop(self, model: str) -> None:
        self.running.pop(model, None)
        task = self._tasks.pop(model, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._changed(model)

    def _changed(self, model: str) -> None:
        if self._on_change is not None:
            self._on_change(model)

    async def _drive(self, rollout: Rollout) -> None:
        try:
            while rollout.state is State.RUNNING:
                await asyncio.sleep(rollout.next_check_s())
                rollout.check()
        except Exception as exc:  # a bug: stop the rollout rather than leave it half-way
            log.error("rollout of model '%s' failed", rollout.model, exc_info=exc)
            with contextlib.suppress(Exception):
                rollout.abort(f"internal error: {type(exc).__name__}")
        finally:
            if self.running.get(rollout.model) is rollout:
                self._stop(rollout.model)

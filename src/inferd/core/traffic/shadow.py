"""Shadow traffic: a sample of a model's answers sent again to another version, compared.

Contract:
- :meth:`Shadow.offer` is called after the primary version has computed its answer and
  before the answer is sent; it only samples (``random.random() < fraction``) and starts
  a task, so it never delays or changes the primary answer. Answers of the shadow version
  itself are not mirrored.
- At most ``max_in_flight`` mirrored requests run at once per model; an offer past that
  bound is dropped and counted (``dropped``), as is one the shadow version's full queue
  refuses. A mirrored request has the shadow version's own timeout. Mirrored requests
  gather for :data:`GATHER_S` and reach the shadow version's queue together, so they run
  there as batches, not one model call per mirrored row.
- Each mirrored request ends in one outcome: ``agree``, ``disagree`` (see
  :mod:`inferd.core.traffic.comparison`), ``dropped`` or ``error`` (the shadow version failed, is
  not serving, or timed out). Outcomes are counted in metrics and in :meth:`Shadow.state`,
  with a bounded ring of recent disagreeing examples (tensors elided past
  :data:`EXAMPLE_ELEMENTS` elements).
- Replacing or stopping a shadow cancels its mirrored requests; :meth:`Shadows.close`
  cancels them all (shutdown).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import numpy as np

from inferd.core.store.model_config import ShadowConfig
from inferd.core.traffic.comparison import Comparison, Tolerance, compare
from inferd.errors import InferdError, ResourceExhausted, clip
from inferd.metrics import SHADOW_OUTCOMES, Metrics, ShadowObserver
from inferd.types import NUMPY_TO_DATATYPE, Tensor

log = logging.getLogger("inferd.shadow")

Arrays = dict[str, np.ndarray[Any, Any]]
#: Runs ``arrays`` on (model, version) and returns its outputs by name, converted to the
#: version's declared datatypes (the service provides it).
ShadowRun = Callable[[str, str, Arrays], Awaitable[dict[str, Tensor]]]

#: Elements of a tensor kept in an example; the rest is counted as elided.
EXAMPLE_ELEMENTS: Final = 32
#: Characters kept of one BYTES element in an example.
EXAMPLE_TEXT: Final = 64
#: How long mirrored requests gather before they go to the shadow version together.
GATHER_S: Final = 0.05

#: A disagreement as seen: time, request id, inputs, the two answers, their comparison.
_Seen = tuple[float, str | None, Arrays, list[Tensor], dict[str, Tensor], Comparison]


def _resolve(release: asyncio.Future[None]) -> None:
    if not release.done():
        release.set_result(None)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


class Shadow:
    """One model's shadow: where its sampled answers are mirrored, and what was seen."""

    def __init__(
        self,
        model: str,
        config: ShadowConfig,
        run: ShadowRun,
        observer: ShadowObserver | None,
        source: str,
    ) -> None:
        self.model = model
        self.config = config
        self.version = config.version
        self.source = source
        self.observer = observer
        self._fraction = config.fraction
        self._max_in_flight = config.max_in_flight
        self._tolerance = Tolerance(config.rtol, config.atol)
        self._run = run
        self._tasks: set[asyncio.Task[None]] = set()
        self._since = _now()
        self._counts = dict.fromkeys(SHADOW_OUTCOMES, 0)
        self._reasons: collections.Counter[str] = collections.Counter()
        #: Recent disagreements as they were seen; shown (elided) by :meth:`state` only.
        self._recent: collections.deque[_Seen] = collections.deque(maxlen=config.examples)
        self._last_error: str | None = None
        self._stopped = False
        self._release: asyncio.Future[None] | None = None

    def offer(
        self, version: str, arrays: Arrays, outputs: list[Tensor], request_id: str | None
    ) -> None:
        """The primary ``version`` answered ``arrays`` with ``outputs``: mirror a sample."""
        if version == self.version or self._stopped or random.random() >= self._fraction:
            return
        if len(self._tasks) >= self._max_in_flight:
            self._record("dropped")
            return
        task = asyncio.get_running_loop().create_task(
            self._mirror(dict(arrays), outputs, request_id)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _gathered(self) -> None:
        """Wait for the next release of the mirrored requests gathered meanwhile: they reach
        the shadow version's queue together and run as one batch there, instead of one
        model call per mirrored row (no one waits for a shadow's answer)."""
        release = self._release
        if release is None or release.done():
            loop = asyncio.get_running_loop()
            release = self._release = loop.create_future()
            loop.call_later(GATHER_S, _resolve, release)
        await release

    async def _mirror(self, arrays: Arrays, primary: list[Tensor], request_id: str | None) -> None:
        try:
            await self._gathered()
            answered = await self._run(self.model, self.version, arrays)
        except ResourceExhausted:
            self._record("dropped")  # the shadow version's queue is full
            return
        except InferdError as exc:
            self._failed(exc.message)
            return
        except Exception as exc:
            log.error(
                "model '%s': shadow version '%s' failed",
                self.model,
                self.version,
                exc_info=exc,
            )
            self._failed(f"{type(exc).__name__} (logged)")
            return
        comparison = compare(primary, answered, self._tolerance)
        if self.observer is not None:
            for diff in comparison.outputs:
                for measure, value in (("abs", diff.max_abs), ("rel", diff.max_rel)):
                    # An infinite difference would make the histogram's sum infinite.
                    if value is not None and np.isfinite(value):
                        self.observer.difference(measure, value)
        reason = comparison.reason
        if reason is None:
            self._record("agree")
            return
        self._record("disagree")
        self._reasons[reason] += 1
        if self.observer is not None:
            self.observer.disagreed(reason)
        if self._recent.maxlen:
            self._recent.append((time.time(), request_id, arrays, primary, answered, comparison))

    def _record(self, outcome: str) -> None:
        self._counts[outcome] += 1
        if self.observer is not None:
            self.observer.outcome(outcome)

    def _failed(self, message: str) -> None:
        self._last_error = message
        self._record("error")

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def settle(self) -> None:
        """Wait until the mirrored requests running now have ended."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stop(self) -> list[asyncio.Task[None]]:
        """Mirror nothing more; cancel what runs (returned, to be awaited)."""
        self._stopped = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    def state(self) -> dict[str, Any]:
        """The configuration, counts since it was set, and recent disagreeing examples."""
        return {
            **self.config.model_dump(),
            "source": self.source,
            "since": self._since,
            "in_flight": self.in_flight,
            "counts": dict(self._counts),
            "disagreements": dict(self._reasons),
            "last_error": self._last_error,
            "recent": [_example(*seen) for seen in self._recent],
        }


class Shadows:
    """Every model's shadow. ``by_model`` is empty when no model has one: the service's
    hot path checks it once per answer."""

    def __init__(self, run: ShadowRun, metrics: Metrics | None) -> None:
        self.by_model: dict[str, Shadow] = {}
        self._run = run
        self._metrics = metrics

    def get(self, model: str) -> Shadow | None:
        return self.by_model.get(model)

    def set(self, model: str, config: ShadowConfig | None, source: str) -> Shadow | None:
        """Replace ``model``'s shadow (None: stop it). Counts start over; the metric series
        of a shadow version no longer used go."""
        old = self.by_model.pop(model, None)
        observer: ShadowObserver | None = None
        if old is not None:
            old.stop()
            if config is not None and config.version == old.version:
                observer = old.observer
            elif old.observer is not None:
                old.observer.forget()
        if config is None:
            return None
        if observer is None and self._metrics is not None:
            observer = self._metrics.shadow_observer(model, config.version)
        shadow = Shadow(model, config, self._run, observer, source)
        self.by_model[model] = shadow
        return shadow

    async def close(self) -> None:
        """Stop every shadow and wait for its cancelled requests to end."""
        tasks = [task for shadow in self.by_model.values() for task in shadow.stop()]
        self.by_model.clear()
        await asyncio.gather(*tasks, return_exceptions=True)


def _example(
    seen_at: float,
    request_id: str | None,
    arrays: Arrays,
    primary: list[Tensor],
    answered: dict[str, Tensor],
    comparison: Comparison,
) -> dict[str, Any]:
    return {
        "time": datetime.datetime.fromtimestamp(seen_at, datetime.UTC).isoformat(
            timespec="milliseconds"
        ),
        "request_id": request_id,
        "reason": comparison.reason,
        "inputs": [
            _summary(name, NUMPY_TO_DATATYPE.get(array.dtype, str(array.dtype)), array)
            for name, array in arrays.items()
        ],
        "outputs": [
            {
                **diff.as_dict(),
                "primary": _summary(tensor.name, tensor.datatype, tensor.data),
                "shadow": _tensor_summary(answered.get(tensor.name)),
            }
            for diff, tensor in zip(comparison.outputs, primary, strict=True)
        ],
    }


def _tensor_summary(tensor: Tensor | None) -> dict[str, Any] | None:
    return None if tensor is None else _summary(tensor.name, tensor.datatype, tensor.data)


def _summary(name: str, datatype: str, array: np.ndarray[Any, Any]) -> dict[str, Any]:
    """A tensor as an example shows it: its first :data:`EXAMPLE_ELEMENTS` elements."""
    flat = array.reshape(-1)[:EXAMPLE_ELEMENTS]
    if array.dtype == object:
        data: list[Any] = [
            clip(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v), EXAMPLE_TEXT)
            for v in flat
        ]
    else:
        data = flat.tolist()
    return {
        "name": name,
        "datatype": datatype,
        "shape": list(array.shape),
        "data": data,
        "elided": int(array.size - flat.size),
    }

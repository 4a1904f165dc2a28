"""Running a pipeline: each request goes through its steps' own batchers.

A pipeline version's ``batcher`` is a :class:`PipelineRunner`: the service submits a
request to it as to any batcher. Contract:

- ``submit`` resolves with the pipeline's outputs, or raises the error of the step that
  failed, its message naming the pipeline and the step (the same error class, so a step
  refused with 503 is a 503, a deadline is a 504; a model error stays internal).
- Each step is an ordinary served version: its request joins that version's batcher
  queue with the request's deadline, so rows of many pipeline requests batch together
  at every step. A step names a model and optionally a version or label; it is resolved
  for every request, so a reload of a step model is followed (a step whose version
  closed between resolving and queuing is resolved again once).
- Steps run level by level (see :mod:`inferd.core.serving.pipeline_spec`); the steps of one
  level run at the same time, and a failure cancels the others. The deadline covers
  the whole pipeline; a request cancelled (its client went away) cancels the step it
  is in, whose batcher then drops it.
- Only the tensors later steps or the outputs read are kept between steps; a step's
  input is cast to the datatype the step declares when the producer's array differs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import numpy as np

from inferd.core.serving.batcher import Closed
from inferd.core.serving.stats import Duration
from inferd.errors import (
    DeadlineExceeded,
    ErrorCode,
    InferdError,
    InternalError,
    InvalidArgument,
    PayloadTooLarge,
    ResourceExhausted,
    Unavailable,
)
from inferd.serving_metrics import StepSeries
from inferd.types import TensorSpec, shape_matches

Arrays = dict[str, np.ndarray[Any, Any]]


class StepRunner(Protocol):
    """What a step's version runs its requests on (its batcher, or a pipeline's runner)."""

    @property
    def fault(self) -> str | None: ...

    async def submit(
        self,
        inputs: Arrays,
        deadline: float | None = None,
        arrived: float | None = None,
        alone: bool = False,
    ) -> Arrays: ...


class StepVersion(Protocol):
    """What a pipeline reads of the version that serves a step (the store's
    ``LoadedVersion``; this module does not import the store, which imports it)."""

    @property
    def version(self) -> str: ...

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def batcher(self) -> StepRunner: ...


#: (model, version or label or None) -> the version that serves it now.
Resolve = Callable[[str, "str | None"], StepVersion]

#: A step's error, as the pipeline raises it: the same code, the step named.
_AS: Final[dict[ErrorCode, type[InferdError]]] = {
    ErrorCode.INVALID_ARGUMENT: InvalidArgument,
    ErrorCode.NOT_FOUND: Unavailable,  # the step's model is gone: the pipeline cannot serve
    ErrorCode.UNAVAILABLE: Unavailable,
    ErrorCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    ErrorCode.PAYLOAD_TOO_LARGE: PayloadTooLarge,
    ErrorCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


@dataclasses.dataclass(slots=True)
class Step:
    """One step as it runs: where each input comes from, and what it keeps."""

    name: str
    model: str
    version: str | None
    #: (the model's input, source key, numpy dtype it is fed as)
    feeds: tuple[tuple[str, str, np.dtype[Any]], ...]
    #: Outputs later steps or the pipeline's outputs read.
    keeps: tuple[str, ...]
    series: StepSeries | None = None
    success: Duration = dataclasses.field(default_factory=Duration)
    fail: Duration = dataclasses.field(default_factory=Duration)
    #: The version that served the step last.
    served_by: str = ""

    def stats(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.served_by,
            "success": self.success.as_dict(),
            "fail": self.fail.as_dict(),
        }


def _named(exc: InferdError, pipeline: str, step: Step) -> InferdError:
    """``exc`` with the pipeline and step in its message, of the same code."""
    message = f"pipeline '{pipeline}' step '{step.name}' (model '{step.model}'): {exc.message}"
    named = _AS.get(exc.code, InternalError)(message, retry_after_s=exc.retry_after_s)
    named.__cause__ = exc.__cause__ or exc  # the model's traceback, for the service's log
    return named


class PipelineRunner:
    """Runs one pipeline version's requests (see the module's contract)."""

    def __init__(
        self,
        name: str,
        levels: tuple[tuple[Step, ...], ...],
        outputs: dict[str, str],
        resolve: Resolve,
    ) -> None:
        self._name = name
        self._levels = levels
        self._outputs = tuple(outputs.items())
        self._resolve = resolve
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._closing = False

    @property
    def steps(self) -> list[Step]:
        return [step for level in self._levels for step in level]

    def stats(self) -> dict[str, Any]:
        """The statistics' ``pipeline`` section: each step's count and time by outcome."""
        return {"steps": {step.name: step.stats() for step in self.steps}}

    @property
    def fault(self) -> str | None:
        """Why the pipeline cannot serve now (a step's model is not served or unhealthy),
        or None."""
        for step in self.steps:
            try:
                loaded = self._resolve(step.model, step.version)
            except InferdError as exc:
                return f"step '{step.name}': {exc.message}"
            if loaded.batcher.fault is not None:
                return f"step '{step.name}': {loaded.batcher.fault}"
        return None

    def start(self) -> None:
        if self._idle is None:
            self._idle = asyncio.Event()
            self._idle.set()

    async def submit(
        self,
        inputs: Arrays,
        deadline: float | None = None,
        arrived: float | None = None,
        alone: bool = False,
    ) -> Arrays:
        """Run one request through the steps; the pipeline's outputs (``arrived`` and
        ``alone`` are not passed on: a step's latency target times its own requests from
        its queue, and a step's requests queue as always)."""
        if self._closing:
            raise Closed(f"model '{self._name}' is shutting down")
        self._in_flight += 1
        if self._idle is not None:
            self._idle.clear()
        try:
            values: dict[str, np.ndarray[Any, Any]] = dict(inputs)
            for level in self._levels:
                if len(level) == 1:
                    await self._run(level[0], values, deadline)
                    continue
                tasks = [asyncio.ensure_future(self._run(s, values, deadline)) for s in level]
                try:
                    await asyncio.gather(*tasks)
                except BaseException:
                    for task in tasks:
                        task.cancel()
                    raise
            return {output: values[source] for output, source in self._outputs}
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def _run(self, step: Step, values: Arrays, deadline: float | None) -> None:
        feed = {}
        for model_input, source, dtype in step.feeds:
            array = values[source]
            if array.dtype != dtype and dtype.kind != "O":
                array = array.astype(dtype)
            feed[model_input] = array
        start = time.perf_counter()
        try:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded("the request's deadline passed before this step")
            try:
                outputs = await self._submit(step, feed, deadline)
            except Closed:  # the version closed after it was resolved: a swap
                outputs = await self._submit(step, feed, deadline)
            for output in step.keeps:
                produced = outputs.get(output)
                if produced is None:
                    raise InternalError(f"the model did not produce output '{output}'")
                values[f"{step.name}.{output}"] = produced
        except InferdError as exc:
            self._failed(step, start)
            raise _named(exc, self._name, step) from None
        except asyncio.CancelledError:
            self._failed(step, start)
            raise
        elapsed = time.perf_counter() - start
        step.success.add(elapsed)
        if step.series is not None:
            step.series.answered(elapsed)

    async def _submit(self, step: Step, feed: Arrays, deadline: float | None) -> Arrays:
        loaded = self._resolve(step.model, step.version)
        step.served_by = loaded.version
        for spec in loaded.inputs:
            array = feed.get(spec.name)
            if array is None or not shape_matches(spec.shape, array.shape):
                # The step's model was reloaded with other inputs than the pipeline was
                # checked against: the operator's to fix (reload the pipeline).
                got = "nothing" if array is None else f"shape {list(array.shape)}"
                raise InternalError(
                    f"input '{spec.name}' expects shape {list(spec.shape)}, the pipeline "
                    f"gives {got} (reload the pipeline after changing a step's model)"
                )
        return await loaded.batcher.submit(feed, deadline)

    @staticmethod
    def _failed(step: Step, start: float) -> None:
        step.fail.add(time.perf_counter() - start)
        if step.series is not None:
            step.series.failed()

    async def close(self, grace_s: float | None = None) -> bool:
        """Refuse new requests and wait (at most ``grace_s``) for those running. The
        steps' versions are not the pipeline's: they stay. Always True (no thread of its
        own can be left running)."""
        self._closing = True
        if self._idle is not None and self._in_flight:
            try:
                async with asyncio.timeout(grace_s):
                    await self._idle.wait()
            except TimeoutError:
                pass  # the steps' own deadlines end what is left
        return True

"""InferenceService: the protocol-neutral data plane -- infer, stream, predict. Adapters call
this for inference; nothing else runs a request."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from inferd.core.gate import Gate
from inferd.core.messages import InferRequest, InferResponse, PredictResult
from inferd.core.parameters import check as check_parameters
from inferd.core.parameters import deadline as request_deadline
from inferd.core.serving import classification
from inferd.core.serving.answers import (
    computed,
    outputs_of,
    partial_outputs,
    response_of,
    selected_outputs,
)
from inferd.core.serving.batcher import Closed
from inferd.core.serving.shm import SharedMemory
from inferd.core.serving.simple import predictions, simple_tensor
from inferd.core.serving.validation import (
    INLINE_DECODE_COST,
    Checked,
    check_header,
    decode_cost,
    decode_inputs,
    release_inputs,
)
from inferd.core.store.loaded import LoadedVersion
from inferd.core.store.manager import ModelManager
from inferd.core.traffic.router import Router
from inferd.errors import (
    ErrorCode,
    InferdError,
    InternalError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from inferd.metrics import UNKNOWN, Metrics
from inferd.settings import Settings
from inferd.types import TensorSpec

log = logging.getLogger("inferd.service")


class InferenceService:
    """The data plane: infer, stream and predict. Control (load, traffic, shadow, rollout)
    is :class:`inferd.core.control.ControlPlane`; start, drain and stop are the server's
    (:class:`inferd.core.node.Node`)."""

    def __init__(
        self,
        settings: Settings,
        manager: ModelManager,
        router: Router,
        metrics: Metrics,
        gate: Gate,
        shared_memory: SharedMemory,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.router = router
        self.metrics = metrics
        self.gate = gate
        #: Registered system shared memory regions (core/serving/shm.py): what a request's
        #: inputs are read from and its outputs written to, when it names one.
        self.shared_memory = shared_memory

    def default_model(self) -> str:
        configured = self.settings.models.default_model
        if configured:
            return configured
        names = self.manager.model_names()
        if len(names) == 1:
            return names[0]
        raise InvalidArgument(
            f"several models are served {names}; name one (/models/{{model}}/predict) or set "
            "models.default_model"
        )

    # -- inference ------------------------------------------------------------------------

    async def infer(
        self, request: InferRequest, loaded: LoadedVersion | None = None
    ) -> InferResponse:
        """Run one request through its version's serving plan and batcher; count it, by
        outcome, in metrics and (once its version is known) in the version's statistics.
        The router chooses the version unless ``loaded`` (a version already chosen for this
        request) is given. An error raised after the version was chosen names it."""
        start = time.perf_counter()
        gate = self.gate
        gate.in_flight += 1
        gate.idle.clear()
        self.metrics.started()
        status = "internal"
        elapsed = 0.0  # counted in the latency histogram for answered requests only
        try:
            if gate.draining:
                raise Unavailable("the server is shutting down", retry_after_s=1.0)
            if loaded is None:
                loaded = self.router.resolve(request.model, request.version, request.routing_key)
            try:
                try:
                    response = await self._infer(loaded, request)
                except Closed:
                    loaded = self._rerouted(request, loaded)
                    response = await self._infer(loaded, request)
            except Exception:
                loaded.stats.fail.add(time.perf_counter() - start)
                raise
            status = "ok"
            elapsed = time.perf_counter() - start
            loaded.stats.success.add(elapsed)
            return response
        except InferdError as exc:
            status = exc.code.value
            if exc.code is ErrorCode.INTERNAL:
                raise self._internal(request, loaded, exc) from None
            if loaded is not None:
                exc.model_version = loaded.version
            raise
        except asyncio.CancelledError:
            status = "cancelled"  # the client went away
            raise
        except Exception as exc:
            raise self._internal(request, loaded, exc) from None
        finally:
            if loaded is not None:
                self.metrics.observe(
                    loaded.model, loaded.version, request.protocol, status, elapsed
                )
                rollout = loaded.plan.rollout
                if rollout is not None:
                    rollout.record(loaded.version, status, elapsed)
            else:
                # Labels of what is served only: the request's names are the client's.
                model = request.model if self.manager.knows(request.model) else UNKNOWN
                self.metrics.observe(model, UNKNOWN, request.protocol, status, elapsed)
            self.metrics.finished()
            gate.in_flight -= 1
            if gate.in_flight == 0:
                gate.idle.set()

    def _internal(
        self, request: InferRequest, loaded: LoadedVersion | None, exc: Exception
    ) -> InternalError:
        """Log a failure with its traceback and request id, count it against the model
        version that failed; the client learns only the id (and the version)."""
        request_id = request.effective_id()
        cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
        log.error(
            "model '%s' version '%s' failed (request id %s): %s",
            request.model,
            loaded.version if loaded else request.version or "-",
            request_id,
            exc.message if isinstance(exc, InferdError) else f"{type(exc).__name__}: {exc}",
            exc_info=(type(cause), cause, cause.__traceback__),
        )
        internal = InternalError(f"internal error (request id {request_id})")
        if loaded is not None:
            self.metrics.model_failed(loaded.model, loaded.version)
            internal.model_version = loaded.version
        return internal

    def _rerouted(self, request: InferRequest, closed: LoadedVersion) -> LoadedVersion:
        """Where a request goes whose version stopped serving between routing and its
        queue (a thread decoded its inputs, say), so that a swap fails no request: that
        version anew after a reload; else, if the request named no version, the router's
        choice now."""
        try:
            return self.router.named(request.model, closed.version)
        except (NotFound, Unavailable):
            if request.version:
                raise
            return self.router.resolve(request.model, None, request.routing_key)

    async def _infer(self, loaded: LoadedVersion, request: InferRequest) -> InferResponse:
        """Decode, then the version's plan: the cache (when on) around the batcher, the
        shadow (when on) after it."""
        if loaded.generator is not None:
            raise InvalidArgument(
                f"model '{loaded.model}' streams its outputs; call it on a stream "
                f"(POST /v2/models/{loaded.model}/generate_stream, gRPC ModelStreamInfer "
                "or a WebSocket stream)"
            )
        plan = loaded.plan
        limits = self.settings.safeguards.input_validation
        checked = check_header(loaded, request.inputs, limits)
        selected = selected_outputs(loaded, request)
        classes = classification.requested(request.outputs) if request.outputs else None
        deadline = request_deadline(request.deadline, request.parameters, loaded.settings.timeout_s)
        heavy = decode_cost(checked) > INLINE_DECODE_COST
        if heavy:
            # Element by element in Python: in a thread, so the loop keeps answering.
            arrays = await asyncio.to_thread(decode_inputs, checked, limits)
        else:
            arrays = decode_inputs(checked, limits)
        if request.parameters:
            check_parameters(loaded.model, request.parameters, loaded.sequences is not None)
        cached: str | None = None
        try:
            if plan.cache is None:
                # _submit written out: the cost guard counts the call on this path.
                results = await (
                    loaded.batcher.submit(arrays, deadline, request.arrived, request.alone)
                    if loaded.sequences is None
                    else loaded.sequences.submit(request.parameters, arrays, deadline)
                )
                outputs = outputs_of(loaded, selected, results, plan)
            else:
                names = [spec.name for spec in selected]
                compute = partial(computed, loaded, request, arrays, selected, deadline)
                outputs, hit = await plan.cache.through(arrays, request, names, compute)
                cached = "hit" if hit else "miss"
            if plan.shadow is not None and cached != "hit":
                plan.shadow.offer(loaded.version, arrays, outputs, request.request_id or request.id)
        finally:
            if heavy:  # freed in the thread, slice by slice, not at once on the loop
                await asyncio.to_thread(release_inputs, arrays)
        if classes:
            outputs = classification.classify(
                outputs, classes, loaded.labels, loaded.settings.batching
            )
        return response_of(loaded, request, outputs, cached)

    # -- streaming (decoupled) models -------------------------------------------------------

    def stream(self, request: InferRequest, empty_final: bool) -> AsyncIterator[InferResponse]:
        """The responses of a streaming model: one per partial output (``final`` False),
        then, when ``empty_final``, one without outputs (``final`` True) -- the one place
        where a stream's end is decided for every transport. A request it cannot serve is
        refused here, before anything runs (a model that does not stream is an invalid
        argument); the inputs' elements are decoded when the stream starts."""
        if self.gate.draining:
            raise Unavailable("the server is shutting down", retry_after_s=1.0)
        loaded = self.router.resolve(request.model, request.version, request.routing_key)
        return self._stream(loaded, request, empty_final)

    def _stream(
        self, loaded: LoadedVersion, request: InferRequest, empty_final: bool
    ) -> AsyncIterator[InferResponse]:
        if loaded.generator is None:
            raise InvalidArgument(
                f"model '{loaded.model}' does not stream its outputs; call "
                f"/v2/models/{loaded.model}/infer (or /generate) instead"
            )
        checked = check_header(loaded, request.inputs, self.settings.safeguards.input_validation)
        selected = selected_outputs(loaded, request)
        if request.parameters:
            check_parameters(loaded.model, request.parameters, sequenced=False)
        if request.outputs and classification.requested(request.outputs):
            raise InvalidArgument(
                f"model '{loaded.model}' streams its outputs; classification is for models "
                "that answer once"
            )
        due = request_deadline(request.deadline, request.parameters, loaded.settings.timeout_s)
        return self._partials(loaded, request, checked, selected, due, empty_final)

    async def responses(
        self, request: InferRequest, empty_final: bool
    ) -> AsyncIterator[InferResponse]:
        """What a stream transport sends for one request: the one response of a model that
        answers once, or every response of a streaming model (see :meth:`stream`)."""
        loaded = self.router.resolve(request.model, request.version, request.routing_key)
        if loaded.generator is None:
            yield await self.infer(request, loaded)
            return
        if self.gate.draining:
            raise Unavailable("the server is shutting down", retry_after_s=1.0)
        async for response in self._stream(loaded, request, empty_final):
            yield response

    async def _partials(
        self,
        loaded: LoadedVersion,
        request: InferRequest,
        checked: Checked,
        selected: list[TensorSpec],
        deadline: float,
        empty_final: bool,
    ) -> AsyncIterator[InferResponse]:
        assert loaded.generator is not None
        start = time.perf_counter()
        gate = self.gate
        self.metrics.started()
        gate.in_flight += 1
        gate.idle.clear()
        status = "internal"
        buffered = self.settings.stream.max_buffered_responses
        try:
            limits = self.settings.safeguards.input_validation
            if decode_cost(checked) > INLINE_DECODE_COST:
                arrays = await asyncio.to_thread(decode_inputs, checked, limits)
            else:
                arrays = decode_inputs(checked, limits)
            async for partial in loaded.generator.run(arrays, deadline, buffered):
                outputs = partial_outputs(loaded, selected, partial)
                yield dataclasses.replace(response_of(loaded, request, outputs), final=False)
            if empty_final:
                yield response_of(loaded, request, [])
            status = "ok"
        except InferdError as exc:
            status = exc.code.value
            if exc.code is ErrorCode.INTERNAL:
                raise self._internal(request, loaded, exc) from None
            raise
        except (asyncio.CancelledError, GeneratorExit):
            status = "cancelled"  # the client went away
            raise
        except Exception as exc:
            raise self._internal(request, loaded, exc) from None
        finally:
            elapsed = time.perf_counter() - start
            (loaded.stats.success if status == "ok" else loaded.stats.fail).add(elapsed)
            self.metrics.observe(
                loaded.model, loaded.version, request.protocol, status, elapsed * (status == "ok")
            )
            rollout = loaded.plan.rollout
            if rollout is not None:
                rollout.record(loaded.version, status, elapsed)
            self.metrics.finished()
            gate.in_flight -= 1
            if gate.in_flight == 0:
                gate.idle.set()

    async def predict(
        self,
        model: str | None,
        version: str | None,
        data: Any,
        *,
        batched: bool,
        protocol: str,
        deadline: float | None = None,
        request_id: str | None = None,
        flat: bool = False,
        routing_key: str | None = None,
        alone: bool = False,
    ) -> PredictResult:
        """The simple API: one row (or rows, ``batched``) of the model's one input, shaped as
        the model declares it (core/serving/simple.py); ``flat``: one row given flattened."""
        start = time.perf_counter()
        name = model or self.default_model()
        loaded = self.router.resolve(
            name, version or self.settings.models.default_version, routing_key
        )
        if len(loaded.inputs) != 1:
            raise InvalidArgument(
                f"model '{name}' takes {len(loaded.inputs)} inputs; use the V2 infer endpoint"
            )
        spec = loaded.inputs[0]
        batching = loaded.settings.batching
        tensor = simple_tensor(name, spec, batching, data, batched=batched, flat=flat)
        request = InferRequest(
            model=name,
            version=loaded.version,
            inputs=[tensor],
            outputs=None,
            deadline=deadline,
            protocol=protocol,
            request_id=request_id,
            alone=alone,
        )
        response = await self.infer(request, loaded)
        first = response.outputs[0]
        rows = first.data if batched or not batching else first.data[0]
        return PredictResult(
            predictions(rows, first.datatype),
            response.version,
            round((time.perf_counter() - start) * 1000, 3),
            response.cache,
        )

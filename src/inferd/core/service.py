"""InferenceService: the protocol-neutral data plane. Adapters call this and nothing else."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, Final

import numpy as np

from inferd import __version__
from inferd.core.cache import ResponseCache
from inferd.core.messages import InferRequest, InferResponse, PredictResult
from inferd.core.parameters import check as check_parameters
from inferd.core.plan import ServingPlan, plan_for
from inferd.core.serving import classification
from inferd.core.serving.batcher import Closed
from inferd.core.serving.outputs import check_finite
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
from inferd.core.store.group import ProcessGroup
from inferd.core.store.load_override import parse_load_parameters
from inferd.core.store.loaded import LoadedVersion
from inferd.core.store.manager import ModelManager
from inferd.core.store.model_config import ModelConfig, parse_shadow
from inferd.core.store.triton_config import triton_config
from inferd.core.traffic.rollouts import Rollouts
from inferd.core.traffic.router import Router
from inferd.core.traffic.shadow import Arrays, Shadows
from inferd.errors import (
    ErrorCode,
    InferdError,
    InternalError,
    InvalidArgument,
    ModelLoadError,
    NotFound,
    Unavailable,
)
from inferd.metrics import UNKNOWN, Metrics
from inferd.settings import Settings
from inferd.tensors import round_to_bf16
from inferd.types import DATATYPE_TO_NUMPY, Tensor, TensorSpec

log = logging.getLogger("inferd.service")

EXTENSIONS = (
    "binary_tensor_data",
    "model_configuration",
    "statistics",
    "model_repository",
    "generate",
    "classification",
    "sequence",
)


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        manager: ModelManager,
        metrics: Metrics,
        cache: ResponseCache | None = None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        #: Which version answers a request (labels, traffic split).
        self.router = Router(manager, settings.routing)
        #: Guarded rollouts: they move the router's splits.
        self.rollouts = Rollouts(self.router, manager.versions, metrics, on_change=self._replan)
        self.metrics = metrics
        self.cache = cache
        self.shadows = Shadows(self._shadow_outputs, metrics)
        #: Registered system shared memory regions (core/serving/shm.py).
        self.shared_memory = SharedMemory(settings.shared_memory, workers=settings.server.workers)
        manager.on_serve(self._serve_shadow)
        #: The --workers process group; alone, this process (see server.build_service).
        self.group = ProcessGroup(None, 1, self.snapshot)
        self.draining = False
        self._stop_by: float | None = None  # when stop() must be done, once draining
        self._started = False
        #: Set once :meth:`start` has loaded the repository.
        self.loaded = asyncio.Event()
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        """Load and warm up every model of the repository (once)."""
        if not self._started:
            self._started = True
            await self.manager.load_all()
            _settle_heap()
            self.loaded.set()

    async def drain(self, grace_s: float) -> bool:
        """Refuse new work and wait (at most ``grace_s``) for accepted work to finish.
        True when everything finished in time. :meth:`stop` then takes no longer than
        what is left of the grace."""
        self.draining = True
        self._stop_by = time.monotonic() + grace_s
        await self.rollouts.close()  # no traffic comes now: nothing left to judge
        try:
            async with asyncio.timeout(grace_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Refuse new work, let queued and running work finish, unload everything; after
        :meth:`drain`, within what is left of its grace."""
        self.draining = True
        grace = None if self._stop_by is None else max(0.0, self._stop_by - time.monotonic())
        await self.rollouts.close()
        await self.shadows.close()
        await self.manager.close(grace)
        self.shared_memory.close()
        if self.cache is not None:
            await self.cache.close()

    # -- health and metadata -------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        # Not before start() has loaded the repository: gRPC listens before that.
        return self.loaded.is_set() and not self.draining and self.manager.ready()

    def server_metadata(self) -> dict[str, Any]:
        extensions = list(EXTENSIONS)
        if self.settings.shared_memory.mode != "off":
            extensions.append("system_shared_memory")
        return {"name": "inferd", "version": __version__, "extensions": extensions}

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return self.model_unready_reason(name, version) is None

    def model_unready_reason(self, name: str, version: str | None = None) -> str | None:
        """Why a model (version) does not serve now, or None when it does."""
        try:
            loaded = self.router.named(name, version)
        except Unavailable as exc:
            return exc.message
        if self.draining:
            return "the server is shutting down"
        if loaded.batcher.fault is not None:
            return f"unhealthy: {loaded.batcher.fault}"
        return None

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        loaded = self.router.named(name, version)
        return {
            "name": name,
            "versions": self.manager.versions(name) if version is None else [loaded.version],
            "platform": loaded.platform,
            "inputs": [spec.as_metadata() for spec in loaded.inputs],
            "outputs": [spec.as_metadata() for spec in loaded.outputs],
        }

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Triton's model configuration, in its JSON form (core/store/triton_config.py)."""
        return triton_config(name, self.router.named(name, version))

    def model_stats(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        names = [name] if name else self.manager.model_names()
        stats = []
        for model in names:
            versions = [version] if version else self.manager.versions(model)
            for v in versions:
                with contextlib.suppress(Unavailable):
                    stats.append(self.router.named(model, v).stats.as_triton())
        if name and not stats:
            raise NotFound(f"model '{name}' has no serving version to report")
        return {"model_stats": stats}

    def snapshot(self) -> dict[str, Any]:
        """This process's readiness and statistics, as the process group reads them."""
        return {
            "pid": os.getpid(),
            "ready": self.ready(),
            "stats": self.model_stats()["model_stats"],
        }

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

    def deadline(self, loaded: LoadedVersion, request: InferRequest) -> float:
        """The earliest of the transport's deadline (header, gRPC call deadline) and the V2
        ``timeout`` parameter; the model's or server's default when neither is given."""
        candidates = [] if request.deadline is None else [request.deadline]
        timeout = request.parameters.get("timeout")
        if timeout is not None:
            if type(timeout) is not int or timeout <= 0:
                raise InvalidArgument(
                    f"parameter 'timeout' must be a positive integer of microseconds, got {timeout!r}"
                )
            candidates.append(time.monotonic() + timeout / 1e6)
        if candidates:
            return min(candidates)
        return time.monotonic() + loaded.settings.timeout_s

    async def infer(
        self, request: InferRequest, loaded: LoadedVersion | None = None
    ) -> InferResponse:
        """Run one request through its version's serving plan and batcher; count it, by
        outcome, in metrics and (once its version is known) in the version's statistics.
        The router chooses the version unless ``loaded`` (a version already chosen for this
        request) is given. An error raised after the version was chosen names it."""
        start = time.perf_counter()
        self._in_flight += 1
        self._idle.clear()
        self.metrics.started()
        status = "internal"
        elapsed = 0.0  # counted in the latency histogram for answered requests only
        try:
            if self.draining:
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
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

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
        selected = self._selected_outputs(loaded, request)
        classes = classification.requested(request.outputs) if request.outputs else None
        deadline = self.deadline(loaded, request)
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
                    loaded.batcher.submit(arrays, deadline)
                    if loaded.sequences is None
                    else loaded.sequences.submit(request.parameters, arrays, deadline)
                )
                outputs = _outputs(loaded, selected, results, plan)
            else:
                outputs, cached = await self._through_cache(
                    plan.cache, loaded, request, arrays, selected, deadline
                )
            if plan.shadow is not None and cached != "hit":
                plan.shadow.offer(loaded.version, arrays, outputs, request.request_id or request.id)
        finally:
            if heavy:  # freed in the thread, slice by slice, not at once on the loop
                await asyncio.to_thread(release_inputs, arrays)
        if classes:
            outputs = classification.classify(
                outputs, classes, loaded.labels, loaded.settings.batching
            )
        return _response(loaded, request, outputs, cached)

    async def _through_cache(
        self,
        cache: ResponseCache,
        loaded: LoadedVersion,
        request: InferRequest,
        arrays: Arrays,
        selected: list[TensorSpec],
        deadline: float,
    ) -> tuple[list[Tensor], str]:
        """The outputs from the prediction cache, else computed (and stored); hit or miss."""

        async def compute() -> list[Tensor]:
            results = await _submit(loaded, request, arrays, deadline)
            return _outputs(loaded, selected, results, loaded.plan)

        names = [spec.name for spec in selected]
        outputs, hit = await cache.through(loaded, arrays, request, names, compute)
        return outputs, "hit" if hit else "miss"

    # -- streaming (decoupled) models -------------------------------------------------------

    def stream(self, request: InferRequest) -> AsyncIterator[InferResponse]:
        """The responses of a streaming model: one per partial output (``final`` False),
        then one without outputs (``final`` True). A request it cannot serve is refused
        here, before anything runs (a model that does not stream is an invalid argument);
        the inputs' elements are decoded when the stream starts."""
        if self.draining:
            raise Unavailable("the server is shutting down", retry_after_s=1.0)
        loaded = self.router.resolve(request.model, request.version, request.routing_key)
        return self._stream(loaded, request)

    def _stream(self, loaded: LoadedVersion, request: InferRequest) -> AsyncIterator[InferResponse]:
        if loaded.generator is None:
            raise InvalidArgument(
                f"model '{loaded.model}' does not stream its outputs; call "
                f"/v2/models/{loaded.model}/infer (or /generate) instead"
            )
        checked = check_header(loaded, request.inputs, self.settings.safeguards.input_validation)
        selected = self._selected_outputs(loaded, request)
        if request.parameters:
            check_parameters(loaded.model, request.parameters, sequenced=False)
        if request.outputs and classification.requested(request.outputs):
            raise InvalidArgument(
                f"model '{loaded.model}' streams its outputs; classification is for models "
                "that answer once"
            )
        return self._partials(loaded, request, checked, selected, self.deadline(loaded, request))

    async def responses(self, request: InferRequest) -> AsyncIterator[InferResponse]:
        """What a stream transport sends for one request: the one response of a model that
        answers once, or every response of a streaming model (see :meth:`stream`)."""
        loaded = self.router.resolve(request.model, request.version, request.routing_key)
        if loaded.generator is None:
            yield await self.infer(request, loaded)
            return
        if self.draining:
            raise Unavailable("the server is shutting down", retry_after_s=1.0)
        async for response in self._stream(loaded, request):
            yield response

    async def _partials(
        self,
        loaded: LoadedVersion,
        request: InferRequest,
        checked: Checked,
        selected: list[TensorSpec],
        deadline: float,
    ) -> AsyncIterator[InferResponse]:
        assert loaded.generator is not None
        start = time.perf_counter()
        self.metrics.started()
        self._in_flight += 1
        self._idle.clear()
        status = "internal"
        buffered = self.settings.stream.max_buffered_responses
        try:
            limits = self.settings.safeguards.input_validation
            if decode_cost(checked) > INLINE_DECODE_COST:
                arrays = await asyncio.to_thread(decode_inputs, checked, limits)
            else:
                arrays = decode_inputs(checked, limits)
            async for partial in loaded.generator.run(arrays, deadline, buffered):
                outputs = _partial_outputs(loaded, selected, partial)
                yield dataclasses.replace(_response(loaded, request, outputs), final=False)
            yield _response(loaded, request, [])
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
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def _selected_outputs(self, loaded: LoadedVersion, request: InferRequest) -> list[TensorSpec]:
        if not request.outputs:
            return list(loaded.outputs)
        selected = []
        for wanted in request.outputs:
            spec = loaded.output_spec(wanted.name)
            if spec is None:
                raise InvalidArgument(
                    f"unknown output '{wanted.name}' for model '{loaded.model}'; expected "
                    f"{[s.name for s in loaded.outputs]}"
                )
            selected.append(spec)
        return selected

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

    # -- repository extension ---------------------------------------------------------------

    def repository_index(self, full: bool = False) -> list[dict[str, str]]:
        """Every model and version with its state. A load failure's reason is its fixed
        class (``load_failed: config_error``) unless ``full`` (admin callers only)."""
        return [
            {
                "name": s.model,
                "version": s.version,
                "state": s.state.value,
                "reason": s.reason if full else s.public_reason(),
            }
            for s in self.manager.index()
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
        _settle_heap()
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
                spec.name, spec.datatype, _as_datatype(results[spec.name], spec.datatype)
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


def _settle_heap() -> None:
    """Move what startup allocated (frameworks, models) out of the collector's sight.

    With torch, onnxruntime and grpc imported a process holds a few hundred thousand
    long-lived objects; every full collection walked them all (~100 ms on this class of
    machine, a stall of every request in flight). Frozen objects are never scanned again;
    only what requests allocate is.
    """
    gc.collect()
    gc.freeze()


def _submit(
    loaded: LoadedVersion, request: InferRequest, arrays: Arrays, deadline: float
) -> Awaitable[Mapping[str, np.ndarray[Any, Any]]]:
    """The request's rows through the version's batcher, or its sequence batcher (the
    awaitable itself: no coroutine frame of its own on the hot path)."""
    if loaded.sequences is None:
        return loaded.batcher.submit(arrays, deadline)
    return loaded.sequences.submit(request.parameters, arrays, deadline)


def _outputs(
    loaded: LoadedVersion,
    selected: list[TensorSpec],
    results: Mapping[str, np.ndarray[Any, Any]],
    plan: ServingPlan,
) -> list[Tensor]:
    """The selected outputs of a request's rows, in their declared datatypes (and checked
    for NaN/Inf when the plan says so)."""
    outputs = []
    for spec in selected:
        array = results.get(spec.name)
        if array is None:
            raise InferdError(f"model '{loaded.model}' did not produce output '{spec.name}'")
        array = _as_datatype(array, spec.datatype)
        if plan.check_finite:
            check_finite(loaded.model, spec, array)
        outputs.append(Tensor(spec.name, spec.datatype, array))
    return outputs


def _response(
    loaded: LoadedVersion, request: InferRequest, outputs: list[Tensor], cache: str | None = None
) -> InferResponse:
    return InferResponse(
        model=loaded.model,
        version=loaded.version,
        outputs=outputs,
        id=request.id if request.id is not None else request.request_id,
        output_parameters={o.name: o.parameters for o in request.outputs or ()},
        cache=cache,
    )


def _partial_outputs(
    loaded: LoadedVersion, selected: list[TensorSpec], partial: Any
) -> list[Tensor]:
    """The selected outputs a partial carries (a partial may carry some outputs only)."""
    if not isinstance(partial, Mapping):
        raise InternalError(
            f"model '{loaded.model}' yielded {type(partial).__name__}; a streaming model "
            "yields dicts of arrays"
        )
    unknown = [name for name in partial if loaded.output_spec(name) is None]
    if unknown:
        raise InternalError(f"model '{loaded.model}' yielded undeclared outputs {unknown}")
    outputs = []
    for spec in selected:
        if spec.name in partial:
            array = _as_datatype(np.asarray(partial[spec.name]), spec.datatype)
            if loaded.plan.check_finite:
                check_finite(loaded.model, spec, array)
            outputs.append(Tensor(spec.name, spec.datatype, array))
    return outputs


def _as_datatype(array: np.ndarray[Any, Any], datatype: str) -> np.ndarray[Any, Any]:
    target = DATATYPE_TO_NUMPY[datatype]
    if datatype == "BF16":
        return round_to_bf16(array)
    if array.dtype != target and datatype != "BYTES":
        return array.astype(target)
    return array

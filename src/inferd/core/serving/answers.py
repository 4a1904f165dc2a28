"""A request's answer from what its version computed: the outputs it selected, in their
declared datatypes (and checked for NaN/Inf when the version's plan says so), a streaming
model's partials, and the response that carries them."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

import numpy as np

from inferd.core.messages import InferRequest, InferResponse
from inferd.core.plan import ServingPlan
from inferd.core.serving.outputs import check_finite
from inferd.core.store.loaded import LoadedVersion
from inferd.core.traffic.shadow import Arrays
from inferd.errors import InferdError, InternalError, InvalidArgument
from inferd.tensors import as_datatype
from inferd.types import Tensor, TensorSpec


def selected_outputs(loaded: LoadedVersion, request: InferRequest) -> list[TensorSpec]:
    """The outputs a request asks for (every declared one when it names none)."""
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


def submit(
    loaded: LoadedVersion, request: InferRequest, arrays: Arrays, deadline: float
) -> Awaitable[Mapping[str, np.ndarray[Any, Any]]]:
    """The request's rows through the version's batcher, or its sequence batcher (the
    awaitable itself: no coroutine frame of its own on the hot path)."""
    if loaded.sequences is None:
        return loaded.batcher.submit(arrays, deadline, request.arrived, request.alone)
    return loaded.sequences.submit(request.parameters, arrays, deadline)


async def computed(
    loaded: LoadedVersion,
    request: InferRequest,
    arrays: Arrays,
    selected: list[TensorSpec],
    deadline: float,
) -> list[Tensor]:
    """The selected outputs of the request's rows, computed: what the prediction cache
    runs on a miss."""
    results = await submit(loaded, request, arrays, deadline)
    return outputs_of(loaded, selected, results, loaded.plan)


def outputs_of(
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
        array = as_datatype(array, spec.datatype)
        if plan.check_finite:
            check_finite(loaded.model, spec, array)
        outputs.append(Tensor(spec.name, spec.datatype, array))
    return outputs


def response_of(
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


def partial_outputs(
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
            array = as_datatype(np.asarray(partial[spec.name]), spec.datatype)
            if loaded.plan.check_finite:
                check_finite(loaded.model, spec, array)
            outputs.append(Tensor(spec.name, spec.datatype, array))
    return outputs

"""The request-level parameters of an infer request: inferd acts on these, and refuses the
rest (a parameter that would be ignored is an error, never silently dropped); the sequence
batcher's three are read here too."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from inferd.errors import InvalidArgument, clip

SequenceId = int | str

ID: Final = "sequence_id"
START: Final = "sequence_start"
END: Final = "sequence_end"
PARAMETERS: Final = frozenset({ID, START, END})


def _refuse_sequence(model: str, parameters: Mapping[str, Any]) -> None:
    """A model without sequence batching refuses the sequence parameters."""
    given = PARAMETERS & parameters.keys()
    if given:
        raise InvalidArgument(
            f"model '{model}' does not batch sequences (no sequence_batching in its "
            f"model.yaml); parameters {sorted(given)} are not supported"
        )


def _flag(parameters: Mapping[str, Any], key: str) -> bool:
    value = parameters.get(key, False)
    if type(value) is not bool:
        raise InvalidArgument(f"parameter '{key}' must be true or false, got {clip(repr(value))}")
    return value


def sequence_of(model: str, parameters: Mapping[str, Any]) -> tuple[SequenceId, bool, bool]:
    """The request's sequence id, start and end flags."""
    sid = parameters.get(ID)
    if sid is None or sid == 0 or sid == "":
        raise InvalidArgument(
            f"model '{model}' batches sequences: send parameter sequence_id (a number or a "
            "string; sequence_start true on a sequence's first request, sequence_end on its last)"
        )
    if (type(sid) is not int or sid < 0) and (not isinstance(sid, str) or len(sid) > 256):
        raise InvalidArgument(
            f"sequence_id must be a non-negative integer or a string of at most 256 "
            f"characters, got {clip(repr(sid))}"
        )
    return sid, _flag(parameters, START), _flag(parameters, END)


#: ``timeout`` (microseconds), REST's ``binary_data_output``, gRPC streams'
#: ``triton_enable_empty_final_response``, and the sequence batcher's three.
KNOWN: Final = frozenset(
    {"timeout", "binary_data_output", "triton_enable_empty_final_response"} | PARAMETERS
)


def check(model: str, parameters: Mapping[str, Any], sequenced: bool) -> None:
    """Refuse what inferd does not act on for this model (``sequenced``: it batches
    sequences)."""
    unknown = parameters.keys() - KNOWN
    if unknown:
        raise InvalidArgument(
            f"request parameter(s) {clip(sorted(unknown))} are not supported; inferd acts on "
            f"{sorted(KNOWN)}"
        )
    if not sequenced:
        _refuse_sequence(model, parameters)


def deadline(transport: float | None, parameters: Mapping[str, Any], timeout_s: float) -> float:
    """When a request must be answered (``time.monotonic()``): the earliest of the
    transport's deadline (header, gRPC call deadline) and the V2 ``timeout`` parameter
    (microseconds); ``timeout_s`` from now when neither is given."""
    candidates = [] if transport is None else [transport]
    timeout = parameters.get("timeout")
    if timeout is not None:
        if type(timeout) is not int or timeout <= 0:
            raise InvalidArgument(
                f"parameter 'timeout' must be a positive integer of microseconds, got {timeout!r}"
            )
        candidates.append(time.monotonic() + timeout / 1e6)
    if candidates:
        return min(candidates)
    return time.monotonic() + timeout_s

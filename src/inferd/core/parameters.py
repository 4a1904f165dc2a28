"""The request-level parameters of an infer request: inferd acts on these, and refuses the
rest (a parameter that would be ignored is an error, never silently dropped)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from inferd.core import sequences
from inferd.errors import InvalidArgument, clip

#: ``timeout`` (microseconds), REST's ``binary_data_output``, gRPC streams'
#: ``triton_enable_empty_final_response``, and the sequence batcher's three.
KNOWN: Final = frozenset(
    {"timeout", "binary_data_output", "triton_enable_empty_final_response"} | sequences.PARAMETERS
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
        sequences.refuse_parameters(model, parameters)

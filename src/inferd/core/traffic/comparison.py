"""Comparing a shadow version's outputs with the primary's, for one request.

For each output the primary answered: the shadow's output of that name must exist, have
the same datatype and shape; then numeric tensors are compared element by element (the
largest absolute and relative difference, and whether every element is close:
``|shadow - primary| <= atol + rtol * |primary|``), BYTES tensors element for element, and
the rows of a 2-D numeric output by their argmax (the class a classifier picks). NaN equals
NaN and an infinity equals itself; any other difference with a NaN or an infinity is an
infinite one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from inferd.types import Tensor

#: Why outputs disagree, most telling first: a request's reason is the first that any of
#: its outputs has.
REASONS: Final = ("output", "datatype", "shape", "argmax", "values")


@dataclasses.dataclass(frozen=True, slots=True)
class Tolerance:
    rtol: float
    atol: float


@dataclasses.dataclass(frozen=True, slots=True)
class OutputDiff:
    """One output compared. ``reason`` is None when it agrees; the differences are None
    where they do not apply (no numeric comparison was possible)."""

    name: str
    reason: str | None
    max_abs: float | None = None
    max_rel: float | None = None
    #: The share of rows whose argmax agrees (2-D numeric outputs with 2+ columns).
    argmax_agreement: float | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reason": self.reason,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "argmax_agreement": self.argmax_agreement,
            "detail": self.detail,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    outputs: tuple[OutputDiff, ...]

    @property
    def reason(self) -> str | None:
        """None when every output agrees, else the most telling reason (:data:`REASONS`)."""
        found = {o.reason for o in self.outputs if o.reason is not None}
        return next((r for r in REASONS if r in found), None)


def compare(
    primary: Sequence[Tensor], shadow: Mapping[str, Tensor], tolerance: Tolerance
) -> Comparison:
    """Every output of ``primary`` against the output of the same name in ``shadow``."""
    return Comparison(tuple(_compare_one(p, shadow.get(p.name), tolerance) for p in primary))


def _compare_one(primary: Tensor, shadow: Tensor | None, tolerance: Tolerance) -> OutputDiff:
    name = primary.name
    if shadow is None:
        return OutputDiff(name, "output", detail="the shadow version has no such output")
    if shadow.datatype != primary.datatype:
        return OutputDiff(
            name, "datatype", detail=f"primary {primary.datatype}, shadow {shadow.datatype}"
        )
    a, b = primary.data, shadow.data
    if a.shape != b.shape:
        return OutputDiff(name, "shape", detail=f"primary {list(a.shape)}, shadow {list(b.shape)}")
    if a.dtype == object:
        same = bool(np.array_equal(a, b))
        return OutputDiff(name, None if same else "values")
    return _numeric(name, a, b, tolerance)


def _numeric(
    name: str, a: np.ndarray[Any, Any], b: np.ndarray[Any, Any], tolerance: Tolerance
) -> OutputDiff:
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        equal = (x == y) | (np.isnan(x) & np.isnan(y))
        diff = np.where(equal, 0.0, np.abs(x - y))
        diff[np.isnan(diff)] = np.inf  # NaN against a number
        scale = np.maximum(np.abs(x), np.abs(y))
        rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
        rel[np.isinf(diff)] = np.inf  # NaN against a number, or -inf against inf
        close = bool(np.all(equal | (diff <= tolerance.atol + tolerance.rtol * np.abs(x))))
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    agreement = None
    if a.ndim == 2 and a.shape[0] > 0 and a.shape[1] > 1:
        agreement = float(np.mean(np.argmax(a, axis=1) == np.argmax(b, axis=1)))
    if agreement is not None and agreement < 1.0:
        reason: str | None = "argmax"
    else:
        reason = None if close else "values"
    return OutputDiff(name, reason, max_abs, max_rel, agreement)

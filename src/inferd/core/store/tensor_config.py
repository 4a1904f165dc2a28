"""A tensor in model.yaml: inferd's ``shape`` or Triton's ``dims``, and Triton's ``format``,
``reshape`` and ``label_filename``."""

from __future__ import annotations

import math
import re
from typing import Final

from pydantic import BaseModel, Field, field_validator, model_validator

from inferd.types import DATATYPE_TO_NUMPY, TensorSpec


class Strict(BaseModel):
    """model.yaml's sections: an unknown key is an error."""

    model_config = {"extra": "forbid"}


#: Triton's input formats (``FORMAT_NCHW`` ...), as model.yaml may also spell them (``NCHW``).
FORMATS: Final = ("FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW")
#: A label file is named by a plain file name in the model folder.
LABEL_FILE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


class ReshapeConfig(Strict):
    """Triton's ``reshape``: the shape the model itself takes or gives (batch dimension
    excluded), where clients see ``dims``."""

    shape: list[int]


class TensorConfig(Strict):
    name: str = Field(min_length=1, max_length=256)
    datatype: str
    #: The full shape (a batching model's starts with -1); or Triton's ``dims`` instead.
    shape: list[int] | None = None
    #: Triton's dims: the shape without the batch dimension (needs ``max_batch_size``).
    dims: list[int] | None = None
    #: Triton's input format (reported in the configuration; images' layout for clients).
    format: str | None = None
    reshape: ReshapeConfig | None = None
    #: Outputs: labels for the classification extension, one a line, in the model folder.
    label_filename: str | None = None

    @field_validator("datatype")
    @classmethod
    def _datatype(cls, value: str) -> str:
        upper = value.upper()
        if upper not in DATATYPE_TO_NUMPY:
            raise ValueError(
                f"unknown datatype {value!r}; expected one of {list(DATATYPE_TO_NUMPY)}"
            )
        return upper

    @field_validator("shape", "dims")
    @classmethod
    def _shape(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(dim < -1 for dim in value):
            raise ValueError("dimensions are -1 (variable) or >= 0")
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        named = value.upper() if value.upper().startswith("FORMAT_") else f"FORMAT_{value.upper()}"
        if named not in FORMATS:
            raise ValueError(f"unknown format {value!r}; expected one of {list(FORMATS)}")
        return named

    @field_validator("label_filename")
    @classmethod
    def _label_file(cls, value: str | None) -> str | None:
        if value is not None and (not LABEL_FILE.match(value) or ".." in value):
            raise ValueError("a file name in the model folder (no folders)")
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> TensorConfig:
        if (self.shape is None) == (self.dims is None):
            raise ValueError(f"tensor '{self.name}': give one of shape or dims")
        return self

    def spec(self, allow_nonfinite: bool) -> TensorSpec:
        assert self.shape is not None  # ModelConfig turns dims into shape
        return TensorSpec(self.name, self.datatype, tuple(self.shape), allow_nonfinite)


def check_reshape(kind: str, tensor: TensorConfig, max_batch_size: int | None) -> None:
    """A reshape holds the elements the tensor's shape holds: at most one -1 on each side,
    and the same count of fixed elements."""
    assert tensor.reshape is not None and tensor.shape is not None
    if max_batch_size is None:
        raise ValueError(f"{kind} '{tensor.name}': reshape needs max_batch_size")
    dims = tensor.shape[1:] if max_batch_size > 0 else tensor.shape
    target = tensor.reshape.shape
    if dims.count(-1) > 1 or target.count(-1) > 1 or dims.count(-1) != target.count(-1):
        raise ValueError(
            f"{kind} '{tensor.name}': reshape {target} and dims {dims} need the same number "
            "(at most one) of variable (-1) dimensions"
        )
    fixed = [math.prod(d for d in shape if d != -1) for shape in (dims, target)]
    if fixed[0] != fixed[1]:
        raise ValueError(
            f"{kind} '{tensor.name}': reshape {target} does not hold the elements of dims {dims}"
        )

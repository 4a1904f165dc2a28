"""``sequence_batching`` in model.yaml: Triton's sequence batcher (core/serving/sequences.py runs
it). Names and values are Triton's (``CONTROL_SEQUENCE_START``, ``int32_false_true`` ...)."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, field_validator, model_validator

from inferd.core.store.tensor_config import Strict as _Strict

#: The datatypes a correlation id (CORRID) may be given to the model as.
CORRID_TYPES: Final = {
    "TYPE_UINT64": "UINT64",
    "TYPE_INT64": "INT64",
    "TYPE_UINT32": "UINT32",
    "TYPE_INT32": "INT32",
    "TYPE_STRING": "BYTES",
}


class ControlConfig(_Strict):
    kind: Literal[
        "CONTROL_SEQUENCE_START",
        "CONTROL_SEQUENCE_END",
        "CONTROL_SEQUENCE_READY",
        "CONTROL_SEQUENCE_CORRID",
    ]
    int32_false_true: list[int] | None = None
    fp32_false_true: list[float] | None = None
    bool_false_true: list[bool] | None = None
    data_type: str | None = None

    @model_validator(mode="after")
    def _values(self) -> ControlConfig:
        given = [
            v
            for v in (self.int32_false_true, self.fp32_false_true, self.bool_false_true)
            if v is not None
        ]
        if self.kind == "CONTROL_SEQUENCE_CORRID":
            if given or self.data_type not in CORRID_TYPES:
                raise ValueError(
                    f"a CORRID control takes data_type, one of {list(CORRID_TYPES)}, and no "
                    "false/true values"
                )
        elif len(given) != 1 or len(given[0]) != 2 or self.data_type is not None:
            raise ValueError(
                f"{self.kind} takes one of int32_false_true, fp32_false_true or "
                "bool_false_true: two values, [false, true]"
            )
        return self


class ControlInputConfig(_Strict):
    """A tensor the model declares for a sequence control; clients never send it."""

    name: str = Field(min_length=1, max_length=256)
    control: list[ControlConfig] = Field(min_length=1, max_length=1)


class SequenceBatchingConfig(_Strict):
    """Triton's sequence batcher (core/serving/sequences.py)."""

    strategy: Literal["direct", "oldest"] = "direct"
    max_sequence_idle_microseconds: int = Field(1_000_000, ge=1)
    max_queue_delay_microseconds: int = Field(0, ge=0, le=10_000_000)
    #: oldest: live sequences at once (direct: one per batch slot of every instance).
    max_candidate_sequences: int = Field(64, ge=1, le=65_536)
    control_input: list[ControlInputConfig] = Field(default_factory=list)
    #: Python models: ``predict(self, inputs, states)`` gets one dict per row, kept for
    #: its sequence from start to end.
    state: bool = False

    @field_validator("control_input")
    @classmethod
    def _one_each(cls, value: list[ControlInputConfig]) -> list[ControlInputConfig]:
        kinds = [c.control[0].kind for c in value]
        names = [c.name for c in value]
        if len(set(kinds)) != len(kinds) or len(set(names)) != len(names):
            raise ValueError("each control kind and each name at most once")
        return value

"""``model.yaml``: what a model declares about itself.

Everything that can be read from the artifact (ONNX inputs and outputs) may be left out.
Shapes are full tensor shapes as the model sees them; -1 marks a variable dimension.
A model that batches (``max_batch_size`` > 0) has -1 as the first dimension of every input
and output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from inferd import yamltext
from inferd.core.serving.pipeline_spec import (
    EnsembleScheduling,
    PipelineConfig,
    from_ensemble,
    graph,
)
from inferd.core.store.sequence_config import SequenceBatchingConfig
from inferd.core.store.tensor_config import Strict, check_reshape
from inferd.core.store.tensor_config import TensorConfig as TensorConfig  # model.yaml's tensors
from inferd.errors import ConfigError
from inferd.settings_sources import unknown_key

DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")
#: What the weights of a traffic split add up to.
TRAFFIC_TOTAL: Final = 100
#: What a model or version folder may be called (see repository.check_name).
SAFE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


_Strict = Strict


class BatchingConfig(_Strict):
    max_queue_delay_ms: float | None = Field(None, ge=0, le=10_000)
    preferred_batch_sizes: list[int] = Field(default_factory=list)
    max_queue_size: int | None = Field(None, ge=1)
    #: Off (None) by default; see inferd.core.serving.latency and docs/performance.md.
    latency_target_ms: float | None = Field(None, gt=0, le=600_000)

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _preferred(cls, value: list[int]) -> list[int]:
        if any(size < 1 for size in value):
            raise ValueError("preferred batch sizes are >= 1")
        return sorted(set(value))


#: Size suffixes accepted by ``cache.max_bytes`` (``256MiB``, ``1GB``, ``4096``).
SIZE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "KIB": 1 << 10,
    "MB": 1000**2,
    "MIB": 1 << 20,
    "GB": 1000**3,
    "GIB": 1 << 30,
}
SIZE_PATTERN: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


class CacheConfig(_Strict):
    """The prediction cache, for models whose answer depends only on their inputs."""

    enabled: bool = False
    ttl_s: float = Field(300.0, gt=0, description="How long an answer is kept.")
    max_bytes: int = Field(
        256 << 20,
        ge=1,
        description="Bound of the in-process cache (per model), in the memory its entries "
        "take; with Redis, Redis's own memory policy bounds it.",
    )

    @field_validator("max_bytes", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        match = SIZE_PATTERN.match(value)
        unit = match.group(2).upper() if match else None
        if match is None or unit not in SIZE_UNITS:
            raise ValueError(
                f"expected a number of bytes with an optional unit {sorted(u for u in SIZE_UNITS if u)}, "
                f"got {value!r}"
            )
        return int(float(match.group(1)) * SIZE_UNITS[unit])


class VersionPolicy(_Strict):
    """Which versions are served: the latest N, all of them, or a named list."""

    latest: int | None = Field(None, ge=1)
    all: bool = False
    specific: list[str] | None = None

    @model_validator(mode="after")
    def _one(self) -> VersionPolicy:
        chosen = sum([self.latest is not None, self.all, self.specific is not None])
        if chosen > 1:
            raise ValueError("choose one of latest, all, specific")
        if chosen == 0:
            self.latest = 1
        return self


class ShadowConfig(_Strict):
    """Shadow traffic (``shadow:`` in model.yaml, or ``PUT /v2/models/{m}/shadow``): a
    sample of the model's computed answers is sent again to another version, after the
    answer, and the two outputs compared (see inferd.core.traffic.shadow)."""

    version: str = Field(min_length=1, max_length=128, description="A served version name.")
    fraction: float = Field(
        ge=0, le=1, strict=True, description="Share of computed answers mirrored, 0 to 1."
    )
    max_in_flight: int = Field(
        64,
        ge=1,
        le=1024,
        strict=True,
        description="Mirrored requests gathering or running at once; more are dropped.",
    )
    rtol: float = Field(
        1e-4, ge=0, strict=True, allow_inf_nan=False, description="Relative tolerance."
    )
    atol: float = Field(
        1e-5, ge=0, strict=True, allow_inf_nan=False, description="Absolute tolerance."
    )
    examples: int = Field(
        20, ge=0, le=1000, strict=True, description="Recent disagreeing examples kept."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        # ``version: 2`` in YAML is a number; version folders are named by strings.
        return str(value) if type(value) is int else value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not SAFE_NAME.match(value) or ".." in value:
            raise ValueError(
                "a version name: letters, digits, '_', '-' and '.', starting with a letter or digit"
            )
        return value


#: What only a model that runs an artifact acts on: refused in a pipeline's model.yaml.
NOT_FOR_PIPELINES: Final = frozenset(
    {
        "signature",
        "batching",
        "instances",
        "device",
        "precision",
        "intra_op_threads",
        "inter_op_threads",
        "max_batch_time_s",
        "warmup",
        "parameters",
    }
)


class ModelConfig(_Strict):
    runtime: Literal["torchscript", "onnx", "tensorflow", "python"] | None = None
    #: The SavedModel signature served (tensorflow only); default ``serving_default``.
    signature: str | None = Field(None, min_length=1, max_length=256)
    inputs: list[TensorConfig] | None = None
    outputs: list[TensorConfig] | None = None
    max_batch_size: int | None = Field(None, ge=0)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    instances: int = Field(1, ge=1, le=64)
    device: str = "cpu"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    intra_op_threads: int | None = Field(None, ge=0)
    inter_op_threads: int | None = Field(None, ge=0)
    version_policy: VersionPolicy = Field(default_factory=VersionPolicy)
    labels: dict[str, str] = Field(default_factory=dict)
    #: The initial traffic split of requests that name no version: version -> integer
    #: weight >= 0, summing to 100 (see inferd.core.traffic.router).
    traffic: dict[str, StrictInt] | None = None
    timeout_s: float | None = Field(None, gt=0)
    max_batch_time_s: float | None = Field(None, gt=0)
    allow_nonfinite: bool = False
    #: NaN/Inf in a float output: "error" fails the request (500), "encode" sends them
    #: (IEEE values in binary and gRPC contents; "NaN", "Infinity", "-Infinity" in JSON).
    nonfinite_outputs: Literal["error", "encode"] = "error"
    warmup: bool = True
    cache: CacheConfig = Field(default_factory=CacheConfig)
    shadow: ShadowConfig | None = None
    sequence_batching: SequenceBatchingConfig | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    #: A model composed of steps (docs/pipelines.md), instead of an artifact.
    pipeline: PipelineConfig | None = None
    #: Triton's form of the same; read into ``pipeline``.
    ensemble_scheduling: EnsembleScheduling | None = None

    @model_validator(mode="after")
    def _pipeline(self) -> ModelConfig:
        if self.ensemble_scheduling is not None:
            if self.pipeline is not None:
                raise ValueError("give pipeline or ensemble_scheduling, not both")
            if self.inputs is None or self.outputs is None:
                raise ValueError("ensemble_scheduling needs the inputs and outputs declared")
            try:
                self.pipeline = from_ensemble(
                    self.ensemble_scheduling,
                    [t.name for t in self.inputs],
                    [t.name for t in self.outputs],
                )
            except ConfigError as exc:
                raise ValueError(exc.message) from None
            self.ensemble_scheduling = None
        if self.pipeline is not None:
            if self.runtime is not None:
                raise ValueError("a pipeline has no runtime of its own (its steps have theirs)")
            unused = sorted(self.model_fields_set & NOT_FOR_PIPELINES)
            if unused:
                raise ValueError(
                    f"a pipeline does not take {unused[0]!r}: it runs no model of its own (set "
                    "it in the model.yaml of its steps' models)"
                )
            declared = None if self.inputs is None else [t.name for t in self.inputs]
            try:
                graph(self.pipeline, declared)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return self

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not DEVICE_PATTERN.match(value):
            raise ValueError("expected cpu, cuda or cuda:N")
        return value

    @field_validator("traffic", mode="before")
    @classmethod
    def _traffic_names(cls, value: object) -> object:
        # YAML reads `1: 90` with an integer key: version names are strings.
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("traffic")
    @classmethod
    def _traffic(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is None:
            return None
        negative = [v for v, w in value.items() if w < 0]
        if negative:
            raise ValueError(f"the weight of version '{negative[0]}' is below 0")
        if sum(value.values()) != TRAFFIC_TOTAL:
            raise ValueError(f"weights must sum to {TRAFFIC_TOTAL}, got {sum(value.values())}")
        return value

    @field_validator("inputs", "outputs")
    @classmethod
    def _unique(cls, value: list[TensorConfig] | None) -> list[TensorConfig] | None:
        if value is not None:
            names = [t.name for t in value]
            if len(names) != len(set(names)):
                raise ValueError(f"tensor names repeat: {names}")
        return value

    @model_validator(mode="after")
    def _triton_tensors(self) -> ModelConfig:
        """Triton's ``dims`` become the full shape; ``format`` is an input's, and
        ``label_filename`` an output's."""
        for kind, tensors in (("inputs", self.inputs or ()), ("outputs", self.outputs or ())):
            for tensor in tensors:
                if tensor.dims is not None:
                    if self.max_batch_size is None:
                        raise ValueError(
                            f"{kind} '{tensor.name}': dims (Triton's, without the batch "
                            "dimension) need max_batch_size (0 when the model does not batch)"
                        )
                    batch = [-1] if self.max_batch_size > 0 else []
                    tensor.shape = batch + tensor.dims
                    tensor.dims = None
                if tensor.format is not None and kind == "outputs":
                    raise ValueError(f"outputs '{tensor.name}': format is for inputs")
                if tensor.label_filename is not None and kind == "inputs":
                    raise ValueError(f"inputs '{tensor.name}': label_filename is for outputs")
                if tensor.reshape is not None:
                    check_reshape(kind, tensor, self.max_batch_size)
        sequences = self.sequence_batching
        if sequences is not None:
            declared = {t.name for t in self.inputs or ()}
            clash = [c.name for c in sequences.control_input if c.name in declared]
            if clash:
                raise ValueError(
                    f"sequence_batching: control inputs {clash} are also in inputs; clients "
                    "never send them: leave them out of inputs"
                )
            if self.cache.enabled or self.shadow is not None:
                raise ValueError(
                    "a sequence model's answers depend on its sequences' state: no cache, no shadow"
                )
        return self


def check_declared_names(
    kind: str, declared: list[str], read: list[str], config_file: str, artifact: str
) -> None:
    """Declared names must be the artifact's: all of its inputs, and outputs it has."""
    unknown = [n for n in declared if n not in read]
    missing = [n for n in read if n not in declared] if kind == "inputs" else []
    if unknown:
        problem = f"{kind[:-1]} {unknown[0]!r} is not an {kind[:-1]} of {artifact}"
    elif missing:
        problem = f"{kind[:-1]} {missing[0]!r} of {artifact} is not declared"
    else:
        return
    raise ConfigError(f"{config_file}: {problem}; its {kind} are {read}")


def read_model_config(path: Path, shown: str | None = None) -> ModelConfig:
    """Parse ``model.yaml`` (absent -> all defaults). Errors name the file (as ``shown``)
    and the field, and never quote the file's content."""
    where = shown or str(path)
    if not path.exists():
        return ModelConfig()
    try:
        raw = yamltext.load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: {yamltext.problem(exc)}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys")
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_details(ModelConfig, exc)}") from exc


def parse_shadow(doc: object) -> ShadowConfig:
    """A shadow as the admin API receives it (``PUT /v2/models/{m}/shadow``)."""
    if not isinstance(doc, dict):
        raise ConfigError(
            'the shadow is {"version": "<served version>", "fraction": <0 to 1>} or null'
        )
    try:
        return ShadowConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(f"shadow: {_details(ShadowConfig, exc)}") from exc


def _details(model: type[BaseModel], exc: ValidationError) -> str:
    """Each problem with the field it is about; an unknown key with the known ones."""
    return "; ".join(
        unknown_key(model, e["loc"])
        if e["type"] == "extra_forbidden"
        else f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        if e["loc"]
        else e["msg"].removeprefix("Value error, ")  # a check of the whole file
        for e in exc.errors()
    )

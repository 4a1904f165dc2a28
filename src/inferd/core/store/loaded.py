"""What the model store hands out: a version that serves, and the state of each version.

Every model version moves through ``LOADING -> READY -> UNLOADING -> UNAVAILABLE`` or ends
in ``FAILED`` with its reason; a serving version whose batch ran past its
``max_batch_time_s`` is reported ``UNHEALTHY`` until that batch returns. The loader
(:mod:`inferd.core.store.loader`) builds :class:`LoadedVersion` values; the manager
(:mod:`inferd.core.store.manager`) keeps them and their :class:`VersionStatus`.
"""

from __future__ import annotations

import dataclasses
import enum

from inferd.core.plan import BARE, ServingPlan
from inferd.core.serving.batcher import Batcher
from inferd.core.serving.decoupled import GeneratorRunner
from inferd.core.serving.pipeline import PipelineRunner
from inferd.core.serving.sequences import Sequences
from inferd.core.serving.stats import VersionStats
from inferd.core.store.failures import public_reason
from inferd.core.store.model_config import ModelConfig
from inferd.core.store.versions import VersionSettings
from inferd.runtimes.base import PLATFORMS, Runtime
from inferd.types import TensorSpec


class State(enum.Enum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"
    FAILED = "FAILED"
    UNHEALTHY = "UNHEALTHY"


@dataclasses.dataclass(slots=True)
class LoadedVersion:
    """A version that is serving: its runtime, declared tensors and batcher."""

    model: str
    version: str
    runtime_name: str
    config: ModelConfig
    #: What the version's settings resolved to at load (the service and batcher read these).
    settings: VersionSettings
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    runtime: Runtime
    #: A pipeline's runs its steps (inferd.core.serving.pipeline).
    batcher: Batcher | PipelineRunner
    stats: VersionStats
    #: Set for a streaming (decoupled) model: requests go here, not to the batcher.
    generator: GeneratorRunner | None = None
    #: What can change its answers (inferd.core.cache.version_digest), computed at load for
    #: models that cache ("" otherwise).
    digest: str = ""
    #: Output -> its labels (``label_filename``), for the classification extension.
    labels: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    #: Set for a model with sequence batching: requests go here, not to the batcher.
    sequences: Sequences | None = None
    #: The optional steps its requests pass through (core/plan.py), set by the service
    #: when the version starts serving and when its model's shadow or rollout changes.
    plan: ServingPlan = BARE
    #: Input name -> its declaration (from ``inputs``).
    input_index: dict[str, TensorSpec] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.input_index = {spec.name: spec for spec in self.inputs}

    @property
    def max_batch_size(self) -> int:
        return self.settings.max_batch_size

    @property
    def platform(self) -> str:
        return PLATFORMS[self.runtime_name]

    def output_spec(self, name: str) -> TensorSpec | None:
        return next((s for s in self.outputs if s.name == name), None)


@dataclasses.dataclass(slots=True)
class VersionStatus:
    model: str
    version: str
    state: State
    #: The full reason: for the log and admin callers only.
    reason: str = ""
    #: A load failure's fixed class (``config_error``...), empty when none.
    kind: str = ""

    def public_reason(self) -> str:
        """What anyone may see: a load failure's class, or a fixed reason ('unloaded')."""
        return public_reason(self.kind) if self.kind else self.reason

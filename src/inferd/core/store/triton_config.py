"""A version's configuration in Triton's JSON form: what ``GET .../config`` answers and the
ModelConfig RPC carries. It parses as Triton's ``ModelConfig`` with
``google.protobuf.json_format`` (enums by name, messages where Triton has messages); dims
exclude the batch dimension when ``max_batch_size`` > 0."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from inferd.core.store.model_config import VersionPolicy
from inferd.core.store.sequence_config import SequenceBatchingConfig
from inferd.core.store.tensor_config import TensorConfig
from inferd.types import TRITON_CONFIG_DATATYPE, TensorSpec

if TYPE_CHECKING:
    from inferd.core.store.loaded import LoadedVersion


def version_policy(policy: VersionPolicy) -> dict[str, Any]:
    if policy.all:
        return {"all": {}}
    if policy.specific is not None:
        # Triton's versions are numbers; inferd's names need not be.
        return {"specific": {"versions": [int(v) for v in policy.specific if v.isdigit()]}}
    return {"latest": {"num_versions": policy.latest or 1}}


def sequence_batching(config: SequenceBatchingConfig) -> dict[str, Any]:
    delay = config.max_queue_delay_microseconds
    strategy: dict[str, Any] = {"max_queue_delay_microseconds": delay}
    if config.strategy == "oldest":
        strategy["max_candidate_sequences"] = config.max_candidate_sequences
    return {
        config.strategy: strategy,
        "max_sequence_idle_microseconds": config.max_sequence_idle_microseconds,
        "control_input": [
            {"name": c.name, "control": [c.control[0].model_dump(exclude_none=True)]}
            for c in config.control_input
        ],
    }


def triton_config(name: str, loaded: LoadedVersion) -> dict[str, Any]:
    settings = loaded.settings
    batching = settings.batching
    declared = {t.name: t for t in [*(loaded.config.inputs or ()), *(loaded.config.outputs or ())]}

    def tensor(spec: TensorSpec) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": spec.name,
            "data_type": TRITON_CONFIG_DATATYPE[spec.datatype],
            "dims": list(spec.shape[1:] if batching else spec.shape),
        }
        config: TensorConfig | None = declared.get(spec.name)
        if config is not None:
            if config.format is not None:
                doc["format"] = config.format
            if config.reshape is not None:
                doc["reshape"] = {"shape": list(config.reshape.shape)}
            if config.label_filename is not None:
                doc["label_filename"] = config.label_filename
        return doc

    doc: dict[str, Any] = {
        "name": name,
        "platform": loaded.platform,
        "backend": loaded.runtime_name,
        "version_policy": version_policy(loaded.config.version_policy),
        "max_batch_size": settings.max_batch_size,
        "input": [tensor(s) for s in loaded.inputs],
        "output": [tensor(s) for s in loaded.outputs],
        "instance_group": [
            {
                "count": settings.instances,
                "kind": "KIND_GPU" if settings.device.startswith("cuda") else "KIND_CPU",
            }
        ],
    }
    sequences = loaded.config.sequence_batching
    if sequences is not None:
        doc["sequence_batching"] = sequence_batching(sequences)
    elif batching:
        doc["dynamic_batching"] = {
            "preferred_batch_size": list(settings.preferred_batch_sizes),
            "max_queue_delay_microseconds": round(settings.max_queue_delay_s * 1e6),
        }
    return doc

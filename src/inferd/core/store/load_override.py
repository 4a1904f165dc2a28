"""The repository extension's load parameters, the same on REST and gRPC.

``config``: a Triton model configuration (its JSON form, as ``GET .../config`` answers) that
overrides, for this load, what model.yaml says of the same settings: ``max_batch_size``,
``input``/``output`` (dims, format, reshape, label_filename), ``dynamic_batching``,
``instance_group`` and ``version_policy``. Settings Triton's
configuration has no word for (cache, shadow, traffic ...) stay model.yaml's. A later load
without ``config`` reads model.yaml alone again. A field inferd does not act on is refused.

``file:<path>``: files sent with the request are refused: models load only from the
repository's own folders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

import orjson
from pydantic import ValidationError

from inferd.core.store.model_config import ModelConfig
from inferd.core.store.repository import ModelEntry
from inferd.errors import InvalidArgument, clip
from inferd.runtimes.base import PLATFORMS
from inferd.types import TRITON_CONFIG_DATATYPE


class OverrideError(InvalidArgument):
    """A load's ``config`` override that does not fit the model: the request's fault, so
    it is the caller's error and not a load failure of the model."""


#: Triton's data type names -> V2 datatypes.
DATATYPES: Final = {triton: v2 for v2, triton in TRITON_CONFIG_DATATYPE.items()}
#: The top-level fields of an override inferd acts on (name, platform and backend are
#: checked against the model).
FIELDS: Final = frozenset(
    {
        "name",
        "platform",
        "backend",
        "max_batch_size",
        "input",
        "output",
        "dynamic_batching",
        "instance_group",
        "version_policy",
    }
)
TENSOR_FIELDS: Final = frozenset(
    {"name", "data_type", "dims", "format", "reshape", "label_filename"}
)


def parse_load_parameters(parameters: Mapping[str, Any]) -> dict[str, Any] | None:
    """The override's model.yaml keys, or None without ``config``."""
    files = sorted(k for k in parameters if k.startswith("file:"))
    if files:
        raise InvalidArgument(
            f"load parameters {clip(files)}: files cannot be sent with a load; models load "
            "only from the repository's folders"
        )
    unknown = sorted(set(parameters) - {"config"})
    if unknown:
        raise InvalidArgument(
            f"load parameter(s) {clip(unknown)} are not supported; inferd takes 'config' "
            "(a Triton model configuration as JSON)"
        )
    raw = parameters.get("config")
    if raw is None:
        return None
    if not isinstance(raw, str | bytes):
        raise InvalidArgument("load parameter 'config' must be a JSON string")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"load parameter 'config' is not JSON: {clip(str(exc))}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("load parameter 'config' must be a JSON object")
    return _model_yaml(doc)


def _model_yaml(doc: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(doc) - FIELDS)
    if unknown:
        raise InvalidArgument(
            f"config override: field(s) {clip(unknown)} are not supported; inferd acts on "
            f"{sorted(FIELDS)}"
        )
    out: dict[str, Any] = {
        "_checks": {k: doc[k] for k in ("name", "platform", "backend") if k in doc}
    }
    if "max_batch_size" in doc:
        out["max_batch_size"] = doc["max_batch_size"]
    for triton, ours in (("input", "inputs"), ("output", "outputs")):
        if triton in doc:
            out[ours] = [_tensor(t, triton) for t in _list(doc[triton], triton)]
    if "dynamic_batching" in doc:
        out["batching"] = _batching(doc["dynamic_batching"])
    if "instance_group" in doc:
        out.update(_instances(doc["instance_group"]))
    if "version_policy" in doc:
        out["version_policy"] = _policy(doc["version_policy"])
    return out


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidArgument(f"config override: '{what}' must be a list")
    return value


def _object(value: Any, what: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"config override: {what} must be an object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidArgument(
            f"config override: {what}: field(s) {clip(unknown)} are not supported; "
            f"expected {sorted(allowed)}"
        )
    return value


def _tensor(value: Any, kind: str) -> dict[str, Any]:
    tensor = _object(value, f"an {kind}", TENSOR_FIELDS)
    datatype = DATATYPES.get(tensor.get("data_type", ""))
    if datatype is None:
        raise InvalidArgument(
            f"config override: {kind} {clip(repr(tensor.get('name')))}: data_type must be one "
            f"of {sorted(DATATYPES)}"
        )
    out = {"name": tensor.get("name"), "datatype": datatype, "dims": tensor.get("dims", [])}
    out["dims"] = [int(d) for d in out["dims"]] if isinstance(out["dims"], list) else out["dims"]
    for key in ("format", "label_filename"):
        if key in tensor:
            out[key] = tensor[key]
    if "reshape" in tensor:
        out["reshape"] = tensor["reshape"]
    return out


def _batching(value: Any) -> dict[str, Any]:
    fields = frozenset({"preferred_batch_size", "max_queue_delay_microseconds"})
    batching = _object(value, "dynamic_batching", fields)
    out: dict[str, Any] = {}
    if "preferred_batch_size" in batching:
        out["preferred_batch_sizes"] = batching["preferred_batch_size"]
    if "max_queue_delay_microseconds" in batching:
        delay = batching["max_queue_delay_microseconds"]
        out["max_queue_delay_ms"] = int(delay) / 1000 if str(delay).isdigit() else delay
    return out


def _instances(value: Any) -> dict[str, Any]:
    groups = _list(value, "instance_group")
    if len(groups) != 1:
        raise InvalidArgument("config override: instance_group must hold one group")
    group = _object(groups[0], "instance_group[0]", frozenset({"count", "kind", "name"}))
    kinds = {"KIND_CPU": "cpu", "KIND_GPU": "cuda"}
    out: dict[str, Any] = {}
    if "count" in group:
        out["instances"] = group["count"]
    if "kind" in group:
        if group["kind"] not in kinds:
            raise InvalidArgument(
                f"config override: instance_group kind must be one of {sorted(kinds)}"
            )
        out["device"] = kinds[group["kind"]]
    return out


def _policy(value: Any) -> dict[str, Any]:
    policy = _object(value, "version_policy", frozenset({"latest", "all", "specific"}))
    if len(policy) != 1:
        raise InvalidArgument("config override: version_policy names one of latest, all, specific")
    if "latest" in policy:
        latest = _object(policy["latest"], "version_policy.latest", frozenset({"num_versions"}))
        return {"latest": latest.get("num_versions", 1)}
    if "all" in policy:
        return {"all": True}
    specific = _object(policy["specific"], "version_policy.specific", frozenset({"versions"}))
    return {"specific": [str(v) for v in specific.get("versions", [])]}


def overridden(entry: ModelEntry, override: dict[str, Any]) -> ModelEntry:
    """``entry`` with model.yaml's settings replaced by the override's."""
    keys = dict(override)
    checks = keys.pop("_checks", {})
    if checks.get("name", entry.name) != entry.name:
        raise OverrideError(
            f"config override: name {clip(repr(checks['name']))} is not the model's '{entry.name}'"
        )
    runtimes = {v.runtime for v in entry.versions}
    for key, table in (("platform", PLATFORMS), ("backend", {r: r for r in PLATFORMS})):
        if key in checks and {table[r] for r in runtimes} != {checks[key]}:
            raise OverrideError(
                f"config override: {key} {clip(repr(checks[key]))} is not the model's "
                f"({sorted(table[r] for r in runtimes)})"
            )
    base = entry.config.model_dump(exclude_unset=True)
    try:
        config = ModelConfig.model_validate({**base, **keys})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise OverrideError(f"config override: {clip(problems, 400)}") from exc
    return dataclasses.replace(entry, config=config)

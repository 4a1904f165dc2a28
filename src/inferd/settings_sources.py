"""Where each setting comes from: the YAML file, the environment and flags as layers.

Each layer is a nested dict plus the source of every leaf it sets, so that an error names
the file, the variable or the flag that gave the bad value, and ``inferd config`` can say
where every effective value came from. Unknown keys and variables are errors with the
closest known name as a suggestion. Generic over a pydantic model tree.
"""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from inferd.errors import ConfigError

Path_ = tuple[str, ...]
#: Leaf path -> where its value came from ("file inferd.yaml", "env INFERENCE_PORT", ...).
Sources = dict[Path_, str]
#: Leaf path -> the name the user wrote it under (an environment variable, a flag).
Names = dict[Path_, str]

DEFAULT_SOURCE = "default"


def section_of(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    """The model class of field ``name`` when that field is a section, else None."""
    field = model.model_fields.get(name)
    annotation = field.annotation if field is not None else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def node_paths(model: type[BaseModel], prefix: Path_ = ()) -> Iterator[tuple[Path_, bool]]:
    """Every section and leaf path of the tree, with True for sections."""
    for name in model.model_fields:
        path = (*prefix, name)
        section = section_of(model, name)
        yield path, section is not None
        if section is not None:
            yield from node_paths(section, path)


def model_at(model: type[BaseModel], path: Path_) -> type[BaseModel] | None:
    for name in path:
        found = section_of(model, name)
        if found is None:
            return None
        model = found
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class inside an annotation (``X``, ``list[X] | None``...), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def unknown_key(model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    """``'a.b.c' is not a known key; did you mean ...`` for a pydantic extra_forbidden loc."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        current = _model_in(field.annotation) if field is not None else None
    dotted = ".".join(str(p) for p in loc)
    candidates = list(current.model_fields) if current is not None else []
    return f"unknown key {dotted!r}" + suggestion(str(loc[-1]), candidates)


def suggestion(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else f"; expected one of {sorted(candidates)}"


def leaves(model: type[BaseModel], data: Mapping[str, Any], prefix: Path_ = ()) -> Iterator[Path_]:
    """The leaf paths a nested dict sets (a section given as a mapping is walked into)."""
    for key, value in data.items():
        path = (*prefix, str(key))
        section = model_at(model, path)
        if section is not None and isinstance(value, Mapping):
            yield from leaves(model, value, path)
        else:
            yield path


def nest(path: Path_, value: Any, into: dict[str, Any]) -> None:
    node = into
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def merge(low: dict[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """``high`` over ``low``, mappings merged key by key."""
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def env_layer(
    model: type[BaseModel],
    environ: Mapping[str, str],
    prefix: str,
    flat: Mapping[str, Path_],
) -> tuple[dict[str, Any], Sources, Names]:
    """Settings from the environment: ``PREFIX_SECTION__FIELD`` and the flat names.

    A sectioned name beats a flat one for the same field. A variable under the prefix that
    names no setting is an error. A section may be given whole, as a JSON object.
    """
    nodes = dict(node_paths(model))
    known = {prefix + "__".join(p).upper(): p for p in nodes} | dict(flat)
    flat_data: dict[str, Any] = {}
    nested_data: dict[str, Any] = {}
    sources: Sources = {}
    names: Names = {}
    for name in sorted(
        environ, key=lambda n: n.upper() in flat, reverse=True
    ):  # flat names first: sectioned win
        upper = name.upper()
        if not upper.startswith(prefix):
            continue
        path = known.get(upper)
        if path is None:
            raise ConfigError(
                f"environment variable {name} names no setting" + suggestion(upper, list(known))
            )
        value: Any = environ[name]
        if nodes[path]:
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(
                    f"{name}={value!r}: a whole section is given as a JSON object"
                ) from None
        nest(path, value, flat_data if upper in flat else nested_data)
        for leaf in leaves(model, {path[-1]: value}, path[:-1]):
            sources[leaf] = f"env {name}"
            names[leaf] = name
    return merge(flat_data, nested_data), sources, names


def check_keys(model: type[BaseModel], data: Mapping[str, Any], where: str) -> None:
    """Refuse keys the model does not have, at every level, naming the closest one."""
    for path in leaves(model, data):
        parent = model_at(model, path[:-1])
        if parent is not None and path[-1] not in parent.model_fields:
            kind = "section" if len(path) == 1 else "setting"
            raise ConfigError(
                f"{where}: unknown {kind} {'.'.join(path)!r}"
                + suggestion(path[-1], list(parent.model_fields))
            )


def describe(exc: ValidationError, sources: Sources, names: Names) -> str:
    """One message for a validation error, each problem named by where it came from."""
    parts = []
    for error in exc.errors():
        loc = tuple(str(p) for p in error["loc"])
        field = ".".join(loc)
        source = _lookup(sources, loc, DEFAULT_SOURCE)
        name = _lookup(names, loc, "")
        given = error.get("input")
        if source.startswith("env ") and loc in names:
            parts.append(f"{name}={given!r} ({field}): {error['msg']}")
        elif source.startswith("env "):
            parts.append(f"{name} ({field}, got {given!r}): {error['msg']}")
        elif source.startswith(("flag ", "argument ")) and name:
            parts.append(f"{name} {given!r} ({field}): {error['msg']}")
        else:
            where = "" if source == DEFAULT_SOURCE else f", {source}"
            parts.append(f"{field}: {error['msg']} (got {error.get('input')!r}{where})")
    return "invalid settings: " + "; ".join(parts)


def _lookup(table: Mapping[Path_, str], loc: Path_, missing: str) -> str:
    """The entry for ``loc`` or for the nearest section above it."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in table:
            return table[loc[:end]]
    return missing

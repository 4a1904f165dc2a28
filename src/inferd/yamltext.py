"""YAML as inferd reads it (settings files, model.yaml): safe, and a key given twice in one
mapping is an error naming both lines (PyYAML keeps the last one silently)."""

from __future__ import annotations

from typing import Any

import yaml


class RepeatedKey(yaml.YAMLError):
    """A mapping gives the same key twice."""

    def __init__(self, key: object, first: int, again: int) -> None:
        super().__init__(f"key {str(key)[:64]!r} is given twice (lines {first} and {again})")
        self.message = str(self.args[0])


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                break
            if first is not None:
                raise RepeatedKey(key, first, line)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> Any:
    """The document in ``text``; :class:`RepeatedKey` or another ``yaml.YAMLError``."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only


def problem(exc: yaml.YAMLError) -> str:
    """What is wrong with a document and where, without quoting its values."""
    if isinstance(exc, RepeatedKey):
        return exc.message
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return "not valid YAML"
    return f"not valid YAML (line {mark.line + 1}, column {mark.column + 1})"

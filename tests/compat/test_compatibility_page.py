"""docs/compatibility.md: its model.yaml examples are valid model.yaml, and its table
names every extension the server lists."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from inferd.core.catalog import EXTENSIONS
from inferd.core.store.model_config import ModelConfig

PAGE = Path(__file__).parents[2] / "docs" / "compatibility.md"


def test_yaml_examples_are_valid_model_yaml() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) == 2
    for block in blocks:
        ModelConfig.model_validate(yaml.safe_load(block))


def test_every_extension_listed_by_the_server_is_in_the_table() -> None:
    rows = re.findall(r"^\| `([a-z_]+)`", PAGE.read_text(), re.M)
    assert {*EXTENSIONS, "system_shared_memory"} <= set(rows)

"""The model repository on disk: safe names, version folders, artifacts, policies.

Layout: ``<root>/<model>/<version>/model.{pt,onnx,py}`` plus optional
``<root>/<model>/model.yaml``. A single model file is a repository of one model.
Nothing outside the root is ever opened.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Final

from inferd.core.model_config import ModelConfig, read_model_config
from inferd.errors import ConfigError, InvalidArgument, NotFound

SAFE_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")

#: Artifact file name -> runtime.
ARTIFACTS: Final[dict[str, str]] = {
    "model.pt": "torchscript",
    "model.ts": "torchscript",
    "model.onnx": "onnx",
    "model.py": "python",
}
SUFFIX_RUNTIME: Final[dict[str, str]] = {
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".onnx": "onnx",
}


def check_name(kind: str, name: str) -> str:
    """Refuse names that could address anything but a folder of the repository."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise InvalidArgument(
            f"{kind} name {name!r} is not allowed: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit, at most 128 characters"
        )
    return name


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """'v1.10.0' sorts after 'v1.9.0'; digits compare as numbers."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part
    )


@dataclasses.dataclass(frozen=True, slots=True)
class VersionEntry:
    name: str
    artifact: Path
    runtime: str


@dataclasses.dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model found on disk: its config and every version folder (served or not)."""

    name: str
    path: Path
    config: ModelConfig
    versions: tuple[VersionEntry, ...]

    def served_versions(self) -> tuple[VersionEntry, ...]:
        """The versions the version policy selects, oldest first."""
        policy = self.config.version_policy
        if policy.all:
            return self.versions
        if policy.specific is not None:
            wanted = set(policy.specific)
            missing = wanted - {v.name for v in self.versions}
            if missing:
                raise ConfigError(
                    f"model '{self.name}': version_policy.specific names missing versions "
                    f"{sorted(missing)}"
                )
            return tuple(v for v in self.versions if v.name in wanted)
        assert policy.latest is not None
        return self.versions[-policy.latest :]


class Repository:
    """Reads a repository root (or a single model file) without loading anything."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.exists():
            raise ConfigError(f"model repository {root} does not exist")

    def model_names(self) -> list[str]:
        if self.root.is_file():
            return [self._single_file_name()]
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and SAFE_NAME.match(p.name))

    def _single_file_name(self) -> str:
        stem = self.root.stem
        return stem if SAFE_NAME.match(stem) else "model"

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        root = self.root.parent if self.root.is_file() else self.root
        if not resolved.is_relative_to(root):
            raise InvalidArgument(f"path {path} resolves outside the model repository")
        return resolved

    def read(self, name: str) -> ModelEntry:
        """The model's entry; NotFound when no such folder, ConfigError when it is broken."""
        check_name("model", name)
        if self.root.is_file():
            return self._read_single_file(name)
        folder = self._inside(self.root / name)
        if not folder.is_dir():
            raise NotFound(f"model '{name}' is not in the repository")
        config = read_model_config(folder / "model.yaml")
        versions = []
        for child in folder.iterdir():
            if not child.is_dir() or not SAFE_NAME.match(child.name):
                continue
            version = self._read_version(name, child, config)
            if version is not None:
                versions.append(version)
        versions.sort(key=lambda v: natural_key(v.name))
        if not versions:
            raise ConfigError(f"model '{name}': no version folder holds a model file")
        return ModelEntry(name, folder, config, tuple(versions))

    def _read_version(self, model: str, folder: Path, config: ModelConfig) -> VersionEntry | None:
        folder = self._inside(folder)
        for filename, runtime in ARTIFACTS.items():
            candidate = folder / filename
            if candidate.exists():
                artifact = self._inside(candidate)
                return VersionEntry(folder.name, artifact, config.runtime or runtime)
        return None

    def _read_single_file(self, name: str) -> ModelEntry:
        if name != self._single_file_name():
            raise NotFound(f"model '{name}' is not in the repository")
        runtime = SUFFIX_RUNTIME.get(self.root.suffix)
        if runtime is None:
            raise ConfigError(
                f"{self.root.name}: unknown model file type; expected one of "
                f"{sorted(SUFFIX_RUNTIME)}"
            )
        config = read_model_config(self.root.with_suffix(".yaml"))
        entry = VersionEntry("1", self.root, config.runtime or runtime)
        return ModelEntry(name, self.root.parent, config, (entry,))

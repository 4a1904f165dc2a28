"""The model repository on disk: safe names, version folders, artifacts, policies.

Layout: ``<root>/<model>/<version>/model.{pt,onnx,savedmodel,py}`` (a SavedModel is a
folder) plus optional ``<root>/<model>/model.yaml``. A single model file (or a
``*.savedmodel`` SavedModel folder) is a repository of one model.
Nothing outside the root is ever opened.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Final

from inferd.core.serving.pipeline_spec import pipeline_versions
from inferd.core.store.model_config import SAFE_NAME as SAFE_NAME
from inferd.core.store.model_config import ModelConfig, read_model_config
from inferd.errors import ConfigError, InvalidArgument, NotFound, clip

#: Artifact file name -> runtime.
ARTIFACTS: Final[dict[str, str]] = {
    "model.pt": "torchscript",
    "model.ts": "torchscript",
    "model.onnx": "onnx",
    "model.savedmodel": "tensorflow",
    "model.py": "python",
}
#: Files and folders under a version folder that are not the model (Python's bytecode cache).
UNWATCHED: Final = frozenset({"__pycache__"})

SUFFIX_RUNTIME: Final[dict[str, str]] = {
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".onnx": "onnx",
    ".savedmodel": "tensorflow",  # a SavedModel folder
}


def check_name(kind: str, name: str) -> str:
    """Refuse names that could address anything but a folder of the repository."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise InvalidArgument(
            f"{kind} name {clip(repr(name))} is not allowed: use letters, digits, '_', '-' and '.', "
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
    #: The model's model.yaml as messages show it (it may not exist).
    config_file: str = "model.yaml"

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


#: A file as the poller sees it: (inode, size, modification time in ns); a rewrite or a
#: replacement changes it.
Stamp = tuple[int, int, int]


@dataclasses.dataclass(frozen=True, slots=True)
class Fingerprint:
    """What a model folder looks like, read without opening its artifacts: the SHA-256 of
    its model.yaml ("" when absent) and, per version folder, every file under it (dot
    files and ``__pycache__`` aside) with its stamp."""

    config: str
    versions: dict[str, tuple[tuple[str, Stamp], ...]]

    def changed_versions(self, before: Fingerprint) -> set[str]:
        """The version folders that are new or whose files changed since ``before``."""
        return {name for name, files in self.versions.items() if before.versions.get(name) != files}


class Repository:
    """Reads a repository root (or a single model file) without loading anything.

    Every file read (``model.yaml`` included) must resolve inside the root; messages name
    files relative to the root's parent and never quote their content.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.exists():
            raise ConfigError(f"model repository {root} does not exist")
        self._base = self.root.parent
        #: One model file (or a SavedModel folder) served as a repository of one model.
        self.single = self.root.is_file() or (
            self.root.suffix == ".savedmodel" and (self.root / "saved_model.pb").is_file()
        )

    def model_names(self) -> list[str]:
        if self.single:
            return [self._single_file_name()]
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and SAFE_NAME.match(p.name))

    def require_models(self) -> list[str]:
        """The model names; ConfigError saying what a model folder looks like when none."""
        names = self.model_names()
        if names:
            return names
        stray = sorted(p.name for p in self.root.iterdir() if _is_model_file(p))
        hint = (
            f"; {self.shown(self.root / stray[0])} is a model file at the repository root: "
            f"put it in {self.shown(self.root)}/<model>/1/{stray[0]}, or serve the file itself"
            if stray
            else ""
        )
        raise ConfigError(
            f"model repository {self.shown(self.root)} holds no model: expected "
            f"<model>/<version>/ folders holding one of {sorted(ARTIFACTS)}{hint} "
            "(allow_empty / --allow-empty serves it anyway)"
        )

    def shown(self, path: Path) -> str:
        """A path as messages show it: relative to the folder that holds the root."""
        try:
            return str(path.relative_to(self._base))
        except ValueError:
            return str(path)

    def _single_file_name(self) -> str:
        stem = self.root.stem
        return stem if SAFE_NAME.match(stem) else "model"

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        root = self.root.parent if self.single else self.root
        if not resolved.is_relative_to(root):
            raise InvalidArgument(
                f"{self.shown(path)} resolves outside the model repository; refused"
            )
        return resolved

    def read(self, name: str) -> ModelEntry:
        """The model's entry; NotFound when no such folder, ConfigError when it is broken."""
        check_name("model", name)
        if self.single:
            return self._read_single_file(name)
        folder = self._inside(self.root / name)
        if not folder.is_dir():
            raise NotFound(f"model '{name}' is not in the repository")
        config_file = self.root / name / "model.yaml"
        config = read_model_config(self._inside(config_file), self.shown(config_file))
        if config.pipeline is not None:  # its "artifact" is model.yaml (docs/pipelines.md)
            names = pipeline_versions(folder, self.shown(self.root / name))
            entries = (
                VersionEntry(v, folder / "model.yaml", "pipeline")
                for v in sorted(names, key=natural_key)
            )
            return ModelEntry(name, folder, config, tuple(entries), self.shown(config_file))
        versions = [
            self._read_version(self.root / name / child.name, config)
            for child in folder.iterdir()
            if child.is_dir() and SAFE_NAME.match(child.name) and child.name not in ARTIFACTS
        ]
        versions.sort(key=lambda v: natural_key(v.name))
        if not versions:
            stray = sorted(p.name for p in folder.iterdir() if _is_model_file(p))
            where = self.shown(self.root / name)
            if stray:
                raise ConfigError(
                    f"{where}/{stray[0]}: model files go in a version folder ({where}/1/{stray[0]})"
                )
            raise ConfigError(
                f"model '{name}': no version folder; expected {where}/<version>/ holding one "
                f"of {sorted(ARTIFACTS)}"
            )
        entry = ModelEntry(name, folder, config, tuple(versions), self.shown(config_file))
        _check_shadow(entry)
        return entry

    def fingerprint(self, name: str) -> Fingerprint:
        """The model's :class:`Fingerprint`; NotFound when its folder is gone."""
        check_name("model", name)
        if self.single:
            files = (
                ((self.root.name, _stamp(self.root)),) if self.root.is_file() else _files(self.root)
            )
            return Fingerprint(self._digest(self.root.with_suffix(".yaml")), {"1": files})
        folder = self.root / name
        try:
            children = sorted(folder.iterdir())
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(f"model '{name}' is not in the repository") from exc
        versions = {
            child.name: _files(child)
            for child in children
            if child.is_dir() and SAFE_NAME.match(child.name) and child.name not in ARTIFACTS
        }
        return Fingerprint(self._digest(folder / "model.yaml"), versions)

    def _digest(self, config_file: Path) -> str:
        """model.yaml's SHA-256; "" when it does not exist, "outside" when it resolves
        outside the repository (never opened: loading it reports that)."""
        try:
            resolved = self._inside(config_file)
            return hashlib.sha256(resolved.read_bytes()).hexdigest()
        except FileNotFoundError:
            return ""
        except InvalidArgument:
            return "outside"
        except OSError as exc:  # a folder of that name, no permission: loading reports it
            return f"unreadable: {type(exc).__name__}"

    def _read_version(self, folder: Path, config: ModelConfig) -> VersionEntry:
        resolved = self._inside(folder)
        misplaced = resolved / "model.yaml"
        if misplaced.exists():
            raise ConfigError(
                f"{self.shown(folder / 'model.yaml')}: model.yaml belongs in the model folder "
                f"({self.shown(folder.parent / 'model.yaml')}), not in a version folder"
            )
        for filename, runtime in ARTIFACTS.items():
            if (resolved / filename).exists():
                artifact = self._inside(folder / filename)
                return VersionEntry(folder.name, artifact, config.runtime or runtime)
        files = sorted(p.name for p in resolved.iterdir() if not p.name.startswith("."))
        renamable = [f for f in files if "model" + Path(f).suffix in ARTIFACTS]
        if renamable:
            found = renamable[0]
            wanted = "model" + Path(found).suffix
            raise ConfigError(
                f"{self.shown(folder / found)}: a version's model file is named {wanted}; "
                f"rename {found} to {wanted}"
            )
        named = [f for f in files if Path(f).stem == "model"] or files
        if named:
            raise ConfigError(
                f"{self.shown(folder / named[0])}: not a model file inferd knows; expected one "
                f"of {sorted(ARTIFACTS)}"
            )
        raise ConfigError(
            f"{self.shown(folder)}: empty version folder; expected one of {sorted(ARTIFACTS)}"
        )

    def _read_single_file(self, name: str) -> ModelEntry:
        if name != self._single_file_name():
            raise NotFound(f"model '{name}' is not in the repository")
        runtime = SUFFIX_RUNTIME.get(self.root.suffix)
        if runtime is None:
            raise ConfigError(
                f"{self.root.name}: not a model file inferd knows; expected a file ending in "
                f"one of {sorted(s for s in SUFFIX_RUNTIME if s != '.savedmodel')}, or a "
                "SavedModel folder ending in .savedmodel"
            )
        config_file = self.root.with_suffix(".yaml")
        config = read_model_config(self._inside(config_file), self.shown(config_file))
        entry = VersionEntry("1", self.root, config.runtime or runtime)
        return ModelEntry(name, self.root.parent, config, (entry,), self.shown(config_file))


def _check_shadow(entry: ModelEntry) -> None:
    """A shadow must name a version that the version policy serves."""
    if entry.config.shadow is None:
        return
    served = [v.name for v in entry.served_versions()]
    if entry.config.shadow.version not in served:
        raise ConfigError(
            f"{entry.config_file}: shadow.version {entry.config.shadow.version!r} is not a "
            f"version the version policy serves; it serves {served}"
        )


def _is_model_file(path: Path) -> bool:
    # A SavedModel is a folder named like an artifact.
    return path.name in ARTIFACTS or (path.is_file() and path.suffix in SUFFIX_RUNTIME)


def _stamp(path: Path) -> Stamp:
    stat = path.stat()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _files(folder: Path) -> tuple[tuple[str, Stamp], ...]:
    """Every file under ``folder`` (symlinks to folders not followed) with its stamp."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in UNWATCHED]
        for filename in files:
            if filename.startswith("."):
                continue
            path = Path(parent, filename)
            try:
                found.append((str(path.relative_to(folder)), _stamp(path)))
            except OSError:  # removed while walking, or a dangling link: seen next time
                continue
    return tuple(sorted(found))

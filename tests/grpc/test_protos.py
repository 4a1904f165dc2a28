"""The generated modules against the protobuf and grpcio ranges that pyproject.toml declares.

Protobuf refuses to load generated code on a runtime older than the code's gencode
version, so the lowest protobuf inferd declares must be at least that version (``make
proto`` pins the grpcio-tools that stamps it). Nothing is installed here.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import google.protobuf
import grpc
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import inferd.grpc.protos

ROOT = Path(__file__).resolve().parents[2]
PROTOS = Path(inferd.grpc.protos.__file__).parent
GENCODE = re.compile(
    r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*"
    r"(\d+),\s*(\d+),\s*(\d+),\s*'([^']*)'"
)
GRPC_GENERATED = re.compile(r"^GRPC_GENERATED_VERSION = '([^']+)'$", re.M)


def declared(name: str) -> SpecifierSet:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [requirement] = [r for r in map(Requirement, project["dependencies"]) if r.name == name]
    return requirement.specifier


def lower_bound(specifiers: SpecifierSet) -> Version:
    [bound] = [Version(s.version) for s in specifiers if s.operator == ">="]
    return bound


def gencode_versions() -> dict[str, Version]:
    versions = {}
    for path in sorted(PROTOS.glob("*_pb2.py")):
        found = GENCODE.search(path.read_text())
        assert found is not None, f"{path.name}: no gencode version"
        major, minor, patch, suffix = found.groups()
        versions[path.name] = Version(f"{major}.{minor}.{patch}{suffix}")
    return versions


def test_every_proto_is_generated() -> None:
    protos = {p.stem for p in PROTOS.glob("*.proto")}
    assert {name.removesuffix("_pb2.py") for name in gencode_versions()} == protos


def test_every_generated_module_has_its_typed_stub() -> None:
    # mypy reads the stubs (protoc's *_pb2.pyi, mypy-protobuf's *_pb2_grpc.pyi), never the
    # generated code; a module without one would be checked as untyped code.
    modules = {p.stem for p in PROTOS.glob("*_pb2*.py")}
    assert modules == {p.stem for p in PROTOS.glob("*_pb2*.pyi")}


def test_lowest_declared_protobuf_runs_the_generated_code() -> None:
    protobuf = declared("protobuf")
    lowest = lower_bound(protobuf)
    for name, gencode in gencode_versions().items():
        assert lowest >= gencode, f"{name}: gencode {gencode}, but protobuf{protobuf} is declared"


def test_declared_protobuf_meets_tritonclient_and_kserve() -> None:
    # tritonclient[all] 2.73 asks protobuf>=6.30.0,<7.0; kserve 0.21, >=6.33.5,<7.0.
    protobuf = declared("protobuf")
    assert "6.33.5" in protobuf
    assert "7.36.2" in protobuf  # and the newest release when this was written


def test_lowest_declared_grpcio_runs_the_generated_stubs() -> None:
    lowest = lower_bound(declared("grpcio"))
    for path in sorted(PROTOS.glob("*_pb2_grpc.py")):
        found = GRPC_GENERATED.search(path.read_text())
        assert found is not None, f"{path.name}: no GRPC_GENERATED_VERSION"
        assert lowest >= Version(found.group(1)), path.name


@pytest.mark.parametrize("path", sorted(PROTOS.glob("*_pb2*.py")), ids=lambda p: p.name)
def test_generated_modules_load_under_the_installed_runtimes(path: Path) -> None:
    assert google.protobuf.__version__ in declared("protobuf")
    assert grpc.__version__ in declared("grpcio")
    module = importlib.import_module(f"inferd.grpc.protos.{path.stem}")
    assert module.__name__.endswith(path.stem)

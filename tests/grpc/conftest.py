"""In-process gRPC servers over a small repository, and stubs to call them."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from inferd.core.node import Node
from inferd.grpc.protos import grpc_service_pb2_grpc, simple_pb2_grpc
from inferd.grpc.server import GrpcServer, start_grpc
from tests.conftest import NodeFactory

#: Seconds the ``slow`` model takes per batch: long enough for a queued request to expire.
SLOW_S = 0.5

SLOW_MODEL = f"""
import time


class Model:
    def predict(self, inputs):
        time.sleep({SLOW_S})
        return {{"y": inputs["x"]}}
"""

ECHO_MODEL = """
class Model:
    def predict(self, inputs):
        return {"f_out": inputs["f"], "i_out": inputs["i"], "s_out": inputs["s"]}
"""


def _python_model(root: Path, name: str, code: str, config: dict[str, Any]) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(textwrap.dedent(code))
    (root / name / "model.yaml").write_text(yaml.safe_dump({"runtime": "python", **config}))


@pytest.fixture(scope="session")
def grpc_repo(example_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny`` from the example, ``slow`` (FP32 x -> y, SLOW_S per batch, one instance)
    and ``echo`` (FP32 f, INT16 i, BYTES s back as f_out, i_out, s_out)."""
    root = tmp_path_factory.mktemp("grpc-models")
    shutil.copytree(example_repo / "tiny", root / "tiny")
    _python_model(
        root,
        "slow",
        SLOW_MODEL,
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
            "warmup": False,
        },
    )
    _python_model(
        root,
        "echo",
        ECHO_MODEL,
        {
            "inputs": [
                {"name": "f", "datatype": "FP32", "shape": [-1, 3]},
                {"name": "i", "datatype": "INT16", "shape": [-1, 3]},
                {"name": "s", "datatype": "BYTES", "shape": [-1, 1]},
            ],
            "outputs": [
                {"name": "f_out", "datatype": "FP32", "shape": [-1, 3]},
                {"name": "i_out", "datatype": "INT16", "shape": [-1, 3]},
                {"name": "s_out", "datatype": "BYTES", "shape": [-1, 1]},
            ],
        },
    )
    return root


@dataclasses.dataclass
class Served:
    node: Node
    server: GrpcServer
    channel: Any

    @property
    def infer(self) -> Any:
        return grpc_service_pb2_grpc.GRPCInferenceServiceStub(self.channel)

    @property
    def simple(self) -> Any:
        return simple_pb2_grpc.InferenceServiceStub(self.channel)


@pytest.fixture
async def serve(grpc_repo: Path, node_factory: NodeFactory) -> AsyncIterator[Callable[..., Any]]:
    """``await serve(**settings_sections)``: a started service and its gRPC server on a
    free port, with a channel to it. Everything is stopped at teardown."""
    running: list[Served] = []

    async def make(*, start: bool = True, **sections: dict[str, Any]) -> Served:
        sections.setdefault("server", {})["grpc_port"] = 0
        sections.setdefault("models", {}).setdefault("default_model", "tiny")
        node = node_factory(grpc_repo, **sections)
        if start:
            await node.start()
        server = await start_grpc(node, node.settings)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        served = Served(node, server, channel)
        running.append(served)
        return served

    yield make
    for served in running:
        await served.channel.close()
        await served.server.stop(0)


@pytest.fixture
async def served(serve: Callable[..., Any]) -> Served:
    """A started server with default settings."""
    result: Served = await serve()
    return result

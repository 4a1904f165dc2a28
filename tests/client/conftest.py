"""A real server over a repository made for the client: an identity model of every
datatype, a cached one, a slow one with a queue of one, and the streaming ``words``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import pytest

from inferd.example import WORDS_YAML, write_starter
from tests.conftest import ServerProcess

#: Every V2 datatype -> the numpy dtype the client holds it in (BF16: float32).
DATATYPES: Final[dict[str, Any]] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BF16": np.float32,
    "BYTES": np.object_,
}

IDENTITY: Final = (
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        return {name.replace('in_', 'out_'): value for name, value in inputs.items()}\n"
)
SLOW: Final = (
    "import time\n"
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        time.sleep(0.6)\n"
    "        return {'y': inputs['x']}\n"
)

GATED: Final = (
    "import pathlib, time\n"
    "GATE = pathlib.Path(__file__).parent / 'open'\n"
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        deadline = time.monotonic() + 30\n"
    "        while not GATE.exists() and time.monotonic() < deadline:\n"
    "            time.sleep(0.005)\n"
    "        return {'y': inputs['x']}\n"
)


def gate(repo: Path) -> Path:
    """The file that lets the ``gated`` model answer: while it is missing, requests wait."""
    return repo / "gated" / "1" / "open"


SPLIT_MODEL: Final = (
    "class Model:\n"
    "    def load(self, context):\n"
    "        self.version = float(context.version)\n"
    "    def predict(self, inputs):\n"
    "        return {'y': inputs['x'] + self.version}\n"
)


def write_split(root: Path) -> None:
    """``split``: versions 1 and 2 (y = x + version), half the traffic each, a label."""
    for version in ("1", "2"):
        (root / "split" / version).mkdir(parents=True)
        (root / "split" / version / "model.py").write_text(SPLIT_MODEL)
    (root / "split" / "model.yaml").write_text(
        "runtime: python\nmax_batch_size: 0\nversion_policy: {all: true}\n"
        "traffic: {'1': 50, '2': 50}\nlabels: {stable: '1', canary: '2'}\n"
        "inputs: [{name: x, datatype: FP32, shape: [1]}]\n"
        "outputs: [{name: y, datatype: FP32, shape: [1]}]\n"
    )


def identity_yaml() -> str:
    lines = ["runtime: python", "max_batch_size: 0", "inputs:"]
    lines += [f"  - {{name: in_{dt}, datatype: {dt}, shape: [2, 3]}}" for dt in DATATYPES]
    lines.append("outputs:")
    lines += [f"  - {{name: out_{dt}, datatype: {dt}, shape: [2, 3]}}" for dt in DATATYPES]
    return "\n".join(lines) + "\n"


def identity_inputs() -> dict[str, np.ndarray[Any, Any]]:
    """Two rows of every datatype, extremes included."""
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for dt, dtype in DATATYPES.items():
        if dt == "BYTES":
            array = np.array(
                [[b"a", b"bc", "d\u00e9".encode()], [b"", b"x" * 50, b"z"]], dtype=object
            )
        elif dt == "BOOL":
            array = np.array([[True, False, True], [False, False, True]])
        elif dt == "BF16":
            array = np.array([[1.5, -2.0, 0.0078125], [2.0**100, -1.0, 256.0]], dtype=np.float32)
        elif np.dtype(dtype).kind == "f":
            array = rng.standard_normal((2, 3)).astype(dtype)
        else:
            info = np.iinfo(dtype)
            array = np.array([[info.min, 0, 1], [info.max, 2, 3]], dtype=dtype)
        arrays[f"in_{dt}"] = array
    return arrays


def write_model(root: Path, name: str, source: str, yaml: str) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(source)
    (root / name / "model.yaml").write_text(yaml)


@pytest.fixture(scope="session")
def client_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client-models")
    write_model(root, "identity", IDENTITY, identity_yaml())
    write_model(
        root,
        "cached",
        IDENTITY,
        "runtime: python\ncache: {enabled: true}\n"
        "inputs: [{name: in_x, datatype: FP32, shape: [-1, 2]}]\n"
        "outputs: [{name: out_x, datatype: FP32, shape: [-1, 2]}]\n",
    )
    write_model(
        root,
        "slow",
        SLOW,
        "runtime: python\nmax_batch_size: 0\nbatching: {max_queue_size: 1}\n"
        "inputs: [{name: x, datatype: FP32, shape: [1]}]\n"
        "outputs: [{name: y, datatype: FP32, shape: [1]}]\n",
    )
    write_model(
        root,
        "gated",
        GATED,
        "runtime: python\nmax_batch_size: 0\nbatching: {max_queue_size: 1}\n"
        "inputs: [{name: x, datatype: FP32, shape: [1]}]\n"
        "outputs: [{name: y, datatype: FP32, shape: [1]}]\n",
    )
    write_split(root)
    gate(root).touch()  # open: the warm-up's requests pass
    write_starter("words", root / "words" / "1" / "model.py")
    (root / "words" / "model.yaml").write_text(WORDS_YAML)
    return root


@pytest.fixture(scope="session")
def client_server(client_repo: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(client_repo)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()

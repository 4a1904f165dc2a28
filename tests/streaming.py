"""Streaming test models: generators that record every step they take.

``count`` (sync generator) and ``acount`` (async generator) take INT32 ``n``, INT32
``delay_ms`` and BYTES ``tag``; they yield INT32 ``i`` = 0 .. |n|-1, one per partial,
sleeping ``delay_ms`` before each, then raise when ``n`` is negative. Each step appends a
line to ``steps/<tag>`` beside the repository; closing the generator appends ``closed``.
``chunks`` (BYTES ``tag``) yields 10,000 partials of 64 KiB (``chunk``), recording its
steps the same way. ``busy`` answers once (y = x) after 0.2 s and records the most requests it held at once
in ``steps/busy-max``.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Any

import yaml

COUNT = """
import time
from pathlib import Path

import numpy as np

STEPS = Path(__file__).resolve().parents[3] / "steps"


class Model:
    def predict(self, inputs):
        n = int(inputs["n"][0])
        delay = int(inputs["delay_ms"][0]) / 1000
        log = STEPS / inputs["tag"][0].decode()
        try:
            for i in range(abs(n)):
                time.sleep(delay)
                with log.open("a") as f:
                    f.write(f"{i}\\n")
                yield {"i": np.array([i], dtype=np.int32)}
            if n < 0:
                raise ValueError("asked to fail")
        finally:
            with log.open("a") as f:
                f.write("closed\\n")
"""

ACOUNT = """
import asyncio
from pathlib import Path

import numpy as np

STEPS = Path(__file__).resolve().parents[3] / "steps"


class Model:
    async def predict(self, inputs):
        n = int(inputs["n"][0])
        delay = int(inputs["delay_ms"][0]) / 1000
        log = STEPS / inputs["tag"][0].decode()
        try:
            for i in range(abs(n)):
                await asyncio.sleep(delay)
                with log.open("a") as f:
                    f.write(f"{i}\\n")
                yield {"i": np.array([i], dtype=np.int32)}
        finally:
            with log.open("a") as f:
                f.write("closed\\n")
"""

CHUNKS = """
from pathlib import Path

import numpy as np

STEPS = Path(__file__).resolve().parents[3] / "steps"


class Model:
    def predict(self, inputs):
        log = STEPS / inputs["tag"][0].decode()
        chunk = np.array([b"x" * 65536], dtype=object)
        try:
            for i in range(10000):
                with log.open("a") as f:
                    f.write(f"{i}\\n")
                yield {"chunk": chunk}
        finally:
            with log.open("a") as f:
                f.write("closed\\n")
"""

BUSY = """
import threading
import time
from pathlib import Path

STEPS = Path(__file__).resolve().parents[3] / "steps"
_lock = threading.Lock()
_active = 0
_most = 0


class Model:
    def predict(self, inputs):
        global _active, _most
        with _lock:
            _active += 1
            _most = max(_most, _active)
            (STEPS / "busy-max").write_text(str(_most))
        time.sleep(0.2)
        with _lock:
            _active -= 1
        return {"y": inputs["x"]}
"""

COUNT_TENSORS: dict[str, Any] = {
    "inputs": [
        {"name": "n", "datatype": "INT32", "shape": [1]},
        {"name": "delay_ms", "datatype": "INT32", "shape": [1]},
        {"name": "tag", "datatype": "BYTES", "shape": [1]},
    ],
    "outputs": [{"name": "i", "datatype": "INT32", "shape": [1]}],
    "warmup": False,
}


def _python_model(root: Path, name: str, code: str, config: dict[str, Any]) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(textwrap.dedent(code))
    (root / name / "model.yaml").write_text(yaml.safe_dump({"runtime": "python", **config}))


def write_stream_repo(base: Path, example: Path) -> Path:
    """``count``, ``acount``, ``chunks``, ``busy`` and the example's ``tiny`` in ``base/repo`` (returned);
    their steps go to ``base/steps``."""
    (base / "steps").mkdir(parents=True)
    root = base / "repo"
    _python_model(root, "count", COUNT, {**COUNT_TENSORS, "instances": 4})
    _python_model(root, "acount", ACOUNT, COUNT_TENSORS)
    _python_model(
        root,
        "chunks",
        CHUNKS,
        {
            "inputs": [{"name": "tag", "datatype": "BYTES", "shape": [1]}],
            "outputs": [{"name": "chunk", "datatype": "BYTES", "shape": [1]}],
            "warmup": False,
        },
    )
    _python_model(
        root,
        "busy",
        BUSY,
        {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
            "max_batch_size": 1,
            "instances": 8,
            "warmup": False,
        },
    )
    shutil.copytree(example / "tiny", root / "tiny")
    return root


def steps(root: Path, tag: str) -> list[str]:
    """The lines a generator of repository ``root`` wrote for ``tag`` (its steps, then
    ``closed``)."""
    path = root.parent / "steps" / tag
    return path.read_text().split() if path.exists() else []


def busy_max(root: Path) -> int:
    return int((root.parent / "steps" / "busy-max").read_text())

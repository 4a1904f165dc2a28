"""What the payload abuse tests share: a repository with models of several datatypes and a
probe that measures ``/healthz`` latency while an attack runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

#: Most milliseconds ``/healthz`` may take while a heavy request is served.
HEALTHZ_BUDGET_MS = 250.0

INTS_MODEL = """
class Model:
    def predict(self, inputs):
        return {"y": inputs["x"]}
"""

TEXTS_MODEL = """
import numpy as np


class Model:
    def predict(self, inputs):
        return {"n": np.array([inputs["s"].size], dtype=np.int64)}
"""


def _python_model(root: Path, name: str, code: str, config: dict[str, Any]) -> None:
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(textwrap.dedent(code))
    (root / name / "model.yaml").write_text(yaml.safe_dump({"runtime": "python", **config}))


def payload_repo(example_repo: Path, root: Path) -> Path:
    """``tiny`` (FP32 [-1, 4]) from the example; ``ints`` (INT64 x [-1, 2] -> y); ``texts``
    (BYTES s [1, -1], no batching -> INT64 n [1], the number of strings)."""
    shutil.copytree(example_repo / "tiny", root / "tiny")
    _python_model(
        root,
        "ints",
        INTS_MODEL,
        {
            "inputs": [{"name": "x", "datatype": "INT64", "shape": [-1, 2]}],
            "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1, 2]}],
        },
    )
    _python_model(
        root,
        "texts",
        TEXTS_MODEL,
        {
            "inputs": [{"name": "s", "datatype": "BYTES", "shape": [1, -1]}],
            "outputs": [{"name": "n", "datatype": "INT64", "shape": [1]}],
            "max_batch_size": 0,
        },
    )
    return root


#: The probe, run in a process of its own so that the test's own work (building and sending
#: the attack) cannot delay it: asks /healthz until its stdin closes, then prints the
#: latencies (ms) and failures as JSON. "ready" once the first answer came.
PROBE = """
import json, sys, threading, time
import httpx

url, stop, latencies, failures = sys.argv[1], threading.Event(), [], 0
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
with httpx.Client(timeout=10) as client:
    while not stop.is_set():
        start = time.perf_counter()
        try:
            ok = client.get(url).status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            latencies.append((time.perf_counter() - start) * 1000)
            if len(latencies) == 1:
                print("ready", flush=True)
        else:
            failures += 1
        stop.wait(0.005)
print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)
"""


class HealthProbe:
    """Asks ``/healthz`` over and over from another process; ``max_ms`` is the slowest
    answer seen. Use as a context manager around the attack."""

    def __init__(self, url: str) -> None:
        self._url = f"{url}/healthz"
        self.latencies_ms: list[float] = []
        self.failures = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> HealthProbe:
        self._process = subprocess.Popen(
            [sys.executable, "-c", PROBE, self._url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        assert self._process.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._process is not None
        output, _ = self._process.communicate("", timeout=60)
        result = json.loads(output.splitlines()[-1])
        self.latencies_ms = result["latencies"]
        self.failures = result["failures"]

    @property
    def max_ms(self) -> float:
        return max(self.latencies_ms)

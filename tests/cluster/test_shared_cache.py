"""The prediction cache shared through a real Redis by two server processes: an answer is
never served from the cache after anything that can change it changed (a data file of the
version folder, model.yaml's ``parameters``), whichever process computed it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import RedisServer, ServerProcess

#: y = x * the scale in scale.txt (a data file beside model.py) + the offset parameter.
MODEL = """
from pathlib import Path


class Model:
    def load(self, context):
        self.scale = float((context.folder / "data" / "scale.txt").read_text())
        self.offset = float(context.parameters.get("offset", 0))

    def predict(self, inputs):
        return {"y": inputs["x"] * self.scale + self.offset}
"""

ADMIN = "cache-admin-key"


def write_config(root: Path, offset: float) -> None:
    config: dict[str, Any] = {
        "runtime": "python",
        "warmup": False,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        "cache": {"enabled": True, "ttl_s": 600},
        "parameters": {"offset": offset},
    }
    (root / "m" / "model.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "m" / "1" / "data").mkdir(parents=True)
    (root / "m" / "1" / "model.py").write_text(MODEL)
    (root / "m" / "1" / "data" / "scale.txt").write_text("2")
    write_config(root, 0)
    return root


@pytest.fixture
def servers(repository: Path, redis_server: RedisServer) -> Iterator[list[ServerProcess]]:
    env = {
        "INFERENCE_STORAGE__REDIS_URI": redis_server.uri,
        "INFERENCE_STORAGE__TIMEOUT_MS": "2000",
        "INFERENCE_SERVER__ADMIN_TOKEN": ADMIN,
    }
    started = [ServerProcess(repository, env=env) for _ in range(2)]
    try:
        for server in started:
            server.wait_ready()
        yield started
    finally:
        for server in started:
            server.stop()


def answer(server: ServerProcess) -> tuple[list[float], str]:
    """y for x=[5, 1] and whether the cache answered (the model's cache hits count)."""
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [5, 1]}]}
    reply = httpx.post(f"{server.url}/v2/models/m/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    stats = httpx.get(f"{server.url}/v2/models/m/stats", timeout=10).json()
    hits = stats["model_stats"][0]["inference_stats"]["cache_hit"]["count"]
    return reply.json()["outputs"][0]["data"], str(hits)


def reload(server: ServerProcess) -> None:
    reply = httpx.post(
        f"{server.url}/v2/repository/models/m/load",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text


def test_a_changed_data_file_or_parameter_is_never_answered_from_the_shared_cache(
    repository: Path, servers: list[ServerProcess]
) -> None:
    first, second = servers
    assert answer(first) == ([10.0, 2.0], "0")
    assert answer(second) == ([10.0, 2.0], "1"), "the same version shares its answers"

    (repository / "m" / "1" / "data" / "scale.txt").write_text("3")
    reload(first)
    assert answer(first) == ([15.0, 3.0], "0")
    reload(second)
    assert answer(second) == ([15.0, 3.0], "1"), "the new answer, computed by the other one"

    write_config(repository, 100)
    reload(second)
    assert answer(second) == ([115.0, 103.0], "0")
    reload(first)
    assert answer(first) == ([115.0, 103.0], "1")

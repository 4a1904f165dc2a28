"""``inferd init``: the folder it writes validates and serves as is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from inferd.cli import main
from inferd.example import TINY, mlp_reference, mlp_weights
from tests.conftest import NodeFactory, asgi_client

X = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]]
#: Runtime -> what its starter model answers for X.
EXPECTED = {
    "python": np.array(X, dtype=np.float32).sum(axis=1, keepdims=True),
    "onnx": mlp_reference(mlp_weights(TINY), np.array(X, dtype=np.float32)),
    "torchscript": mlp_reference(mlp_weights(TINY), np.array(X, dtype=np.float32)),
    "tensorflow": mlp_reference(mlp_weights(TINY), np.array(X, dtype=np.float32)),
}


@pytest.mark.parametrize("runtime", sorted(EXPECTED))
async def test_init_writes_a_model_that_validates_and_serves(
    tmp_path: Path,
    node_factory: NodeFactory,
    runtime: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["init", "starter", "--runtime", runtime, "--dir", str(tmp_path)]) == 0
    written = capsys.readouterr().out
    assert f"wrote {tmp_path / 'starter' / 'model.yaml'}" in written
    assert (tmp_path / "starter" / "model.yaml").read_text().startswith("# starter:")
    assert await asyncio.to_thread(main, ["validate", str(tmp_path)]) == 0
    node = node_factory(tmp_path)
    async with await asgi_client(node) as client:
        response = await client.post("/predict", json={"batch": X})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["predictions"], EXPECTED[runtime], rtol=1e-5)


def test_init_defaults_to_python_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "m"]) == 0
    assert (tmp_path / "m" / "1" / "model.py").is_file()
    assert "runtime: python" in (tmp_path / "m" / "model.yaml").read_text()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("taken", "already exists; choose another name or --dir"),
        ("../up", "model name '../up' is not allowed"),
    ],
)
def test_init_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    (tmp_path / "taken").mkdir()
    assert main(["init", name, "--dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]

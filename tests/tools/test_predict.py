"""``inferd predict`` and ``inferd models`` against a real server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from inferd.cli import main
from inferd.example import TINY, mlp_reference, mlp_weights
from tests.conftest import ServerProcess

X = [[1.0, 2.0, 3.0, 4.0]]


def expected() -> list[list[float]]:
    out: list[list[float]] = mlp_reference(
        mlp_weights(TINY, seed=0), np.asarray(X, np.float32)
    ).tolist()
    return out


def printed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_predict_prints_the_outputs(
    live_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", live_server.url, "--model", "tiny", "--data", json.dumps(X)]) == 0
    (answer,) = printed(capsys)
    assert answer["model_name"] == "tiny" and answer["model_version"] == "1"
    np.testing.assert_allclose(answer["outputs"]["output"], expected(), rtol=1e-5)  # type: ignore[index]


def test_predict_over_grpc_from_a_file(
    live_server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "x.npy", np.asarray(X, np.float32))
    argv = ["predict", live_server.url, "--model", "tiny", "--file", str(tmp_path / "x.npy")]
    assert main([*argv, "--protocol", "grpc", "--grpc-target", live_server.grpc_target]) == 0
    (answer,) = printed(capsys)
    np.testing.assert_allclose(answer["outputs"]["output"], expected(), rtol=1e-5)  # type: ignore[index]


def test_predict_saves_outputs(live_server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "y.npy"
    assert (
        main(
            [
                "predict",
                live_server.url,
                "--model",
                "tiny",
                "--data",
                json.dumps(X),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    np.testing.assert_allclose(np.load(out), expected(), rtol=1e-5)


def test_predict_streams_partial_answers(
    live_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", live_server.url, "--model", "words", "--data", '["a b c"]', "--stream"]
    assert main(argv) == 0
    assert [a["outputs"] for a in printed(capsys)] == [
        {"text_output": ["a"]},
        {"text_output": ["b"]},
        {"text_output": ["c"]},
    ]


def test_predict_refusals_are_messages(
    live_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", live_server.url, "--model", "tiny", "--data", "[[1, 2, 3]]"]) == 2
    assert "HTTP 400: input 'input': expected shape [-1, 4], got [1, 3]" in capsys.readouterr().err
    assert main(["predict", live_server.url, "--model", "tiny", "--data", "[[1,"]) == 2
    assert "--data: not JSON" in capsys.readouterr().err


def test_models_lists_versions_and_states(
    live_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", live_server.url, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    tiny = next(r for r in rows if r["model"] == "tiny")
    assert (tiny["version"], tiny["state"], tiny["traffic"]) == ("1", "READY", "(admin)")
    assert {"tiny", "wide", "sentiment", "words"} <= {r["model"] for r in rows}
    assert main(["models", live_server.url]) == 0
    table = capsys.readouterr().out
    assert "tiny" in table and "READY" in table


def test_models_says_when_the_dashboard_is_off(
    example_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(example_repo / "sentiment", tmp_path / "sentiment")
    env = {"INFERENCE_SERVER__DASHBOARD": "false"}
    server = ServerProcess(tmp_path, "--grpc-port", "0", env=env)
    try:
        server.wait_ready()
        assert main(["models", server.url]) == 2
    finally:
        server.stop()
    assert "its dashboard is off (server.dashboard)" in capsys.readouterr().err

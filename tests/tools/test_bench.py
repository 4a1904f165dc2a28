"""``inferd bench`` against a real server: HTTP (JSON and binary) and gRPC, JSON and CSV
output, the plot; a refused request stops it before any load."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from inferd.cli import main
from tests.conftest import ServerProcess

SHORT = ["--duration", "0.5", "--warmup", "0.2", "--concurrency", "1,4"]


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    assert main([*argv, *SHORT, "--json"]) == 0
    rows: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return rows


@pytest.mark.parametrize("extra", [[], ["--binary"]], ids=["json", "binary"])
def test_http_steps_report_throughput_and_percentiles(
    live_server: ServerProcess, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    rows = run_json(["bench", live_server.url, "--model", "tiny", *extra], capsys)
    assert [r["concurrency"] for r in rows] == [1, 4]
    for row in rows:
        assert row["errors"] == 0, row
        assert isinstance(row["requests"], int) and row["requests"] > 0
        assert row["throughput"] == pytest.approx(row["requests"] / row["seconds"], rel=0.01)  # type: ignore[operator]
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]  # type: ignore[operator]


def test_grpc_and_csv(live_server: ServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", live_server.url, "--model", "tiny", "--protocol", "grpc"]
    assert main([*argv, "--grpc-target", live_server.grpc_target, *SHORT, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["concurrency"] for r in rows] == ["1", "4"]
    assert all(int(r["requests"]) > 0 and r["errors"] == "0" for r in rows)


def test_data_from_a_file_and_the_plot(
    live_server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "x.json"
    data.write_text(json.dumps([[1.0, 2.0, 3.0, 4.0]]))
    plot = tmp_path / "bench.png"
    argv = ["bench", live_server.url, "--model", "tiny", "--data", str(data), "--plot", str(plot)]
    rows = run_json(argv, capsys)
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert all(r["errors"] == 0 for r in rows)


def test_a_bad_request_stops_it_before_the_load(
    live_server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "x.json"
    data.write_text("[[1.0, 2.0]]")
    assert main(["bench", live_server.url, "--model", "tiny", "--data", str(data), *SHORT]) == 2
    assert "expected shape [-1, 4]" in capsys.readouterr().err
    assert main(["bench", live_server.url, "--model", "tiny", "--concurrency", "0"]) == 2
    assert "--concurrency '0'" in capsys.readouterr().err

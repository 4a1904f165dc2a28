"""What ``inferd serve`` logs when it starts, stops and reloads: one format (uvicorn's
records included), a summary of the models and URLs, and a reload as one event."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.conftest import ServerProcess, clean_environment, free_port, wait_until

MODEL = 'class Model:\n    def predict(self, inputs):\n        return {"y": inputs["x"] * SCALE}\n'
#: Every record starts with inferd's timestamp, level and logger.
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S+ ")


def write_repo(root: Path, scale: int) -> Path:
    (root / "m" / "1").mkdir(parents=True, exist_ok=True)
    (root / "m" / "1" / "model.py").write_text(f"SCALE = {scale}\n" + MODEL)
    config = {
        "runtime": "python",
        "warmup": False,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
    (root / "m" / "model.yaml").write_text(yaml.safe_dump(config))
    return root


def test_start_up_summary_one_format_and_a_reload_as_one_event(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "models", 2)
    log_file = tmp_path / "stderr.log"
    port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "inferd", "serve", str(repo), "--host", "127.0.0.1",
        "--port", str(port), "--grpc-port", str(grpc_port), "--poll-interval-s", "0.1",
    ]  # fmt: skip
    with log_file.open("wb") as stderr:
        process = subprocess.Popen(command, env=clean_environment(), stderr=stderr)
    try:
        wait_until(lambda: "serving 1 of 1 model versions" in log_file.read_text(), 60, "summary")
        time.sleep(0.05)  # the summary's lines are one record, written at once
        write_repo(repo, 3)  # the poller reloads version 1
        wait_until(lambda: "reloaded" in log_file.read_text(), 30, "the reload")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    text = log_file.read_text()
    records = [line for line in text.splitlines() if not line.startswith("  ")]
    assert [r for r in records if not RECORD.match(r)] == []
    assert "INFO uvicorn.error [-]: Started server process" in text
    summary = text.split("serving 1 of 1 model versions:\n", 1)[1].splitlines()[:4]
    assert [line.split() for line in summary] == [
        ["model", "version", "state", "reason"],
        ["m", "1", "READY"],
        ["REST", f"http://127.0.0.1:{port}", "(OpenAPI:", f"http://127.0.0.1:{port}/docs)"],
        ["gRPC", f"127.0.0.1:{grpc_port}"],
    ]
    reload_records = [r for r in records if "model 'm' version '1'" in r]
    assert len(reload_records) == 3, reload_records  # ready, reloaded, unloaded at the stop
    assert "ready (python" in reload_records[0]
    assert "reloaded: the new load serves, the old one drains" in reload_records[1]
    assert reload_records[2].endswith("model 'm' version '1' unloaded")


def test_workers_stop_without_warnings(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "models", 2)
    log_file = tmp_path / "stderr.log"
    command = [
        sys.executable, "-m", "inferd", "serve", str(repo), "--host", "127.0.0.1",
        "--port", str(free_port()), "--grpc-port", "0", "--workers", "2",
    ]  # fmt: skip
    with log_file.open("wb") as stderr:
        process = subprocess.Popen(command, env=clean_environment(), stderr=stderr)
    try:
        wait_until(
            lambda: (
                log_file.read_text().count("ready (python") == 2
                and "serving 1 of 1" in log_file.read_text()
            ),
            60,
            "the workers and the summary",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    text = log_file.read_text()
    assert text.count("model 'm' version '1' unloaded") == 2  # each worker unloaded it
    assert text.count("serving 1 of 1 model versions") == 1  # the first worker's summary
    assert "Warning" not in text
    assert [r for r in text.splitlines() if not RECORD.match(r) and not r.startswith("  ")] == []


def test_tensorflow_start_up_notes_only_at_debug(tmp_path: Path) -> None:
    from inferd.example import TINY, mlp_weights, write_savedmodel

    folder = tmp_path / "tiny.savedmodel"
    write_savedmodel(mlp_weights(TINY), folder)
    seen = {}
    for level in ("info", "debug"):
        log_file = tmp_path / f"{level}.log"
        command = [
            sys.executable, "-m", "inferd", "serve", str(folder), "--host", "127.0.0.1",
            "--port", str(free_port()), "--grpc-port", "0", "--log-level", level,
        ]  # fmt: skip
        with log_file.open("wb") as stderr:
            process = subprocess.Popen(command, env=clean_environment(), stderr=stderr)
        try:
            wait_until(lambda: "serving 1 of 1" in log_file.read_text(), 60, "the summary")  # noqa: B023
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 0
        seen[level] = log_file.read_text()
    notes = ("oneDNN custom operations", "cpu_feature_guard")
    assert [n for n in notes if n in seen["info"]] == []
    assert [n for n in notes if n in seen["debug"]] != []


def test_access_lines_go_to_stderr_stamped_like_the_records(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "models", 2)
    log_file = tmp_path / "stderr.log"
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
    with log_file.open("wb") as stderr:
        server = ServerProcess(repo, env={"INFERENCE_SERVER__ACCESS_LOG": "plain"}, stderr=stderr)
    try:
        server.wait_ready()
        for n in range(3):
            answer = httpx.post(
                f"{server.url}/v2/models/m/infer", json=body, headers={"x-request-id": f"a-{n}"}
            )
            assert answer.status_code == 200
        assert httpx.get(f"{server.url}/v2/models/nope").status_code == 404
    finally:
        assert server.stop() == 0
    lines = [line for line in log_file.read_text().splitlines() if " id=a-" in line]
    assert len(lines) == 3
    for n, line in enumerate(lines):
        assert re.fullmatch(
            rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}} POST /v2/models/m/infer 200 [0-9.]+ms "
            rf"model=m version=- key=- id=a-{n}",
            line,
        )
    assert re.search(r" GET /v2/models/nope 404 [0-9.]+ms model=nope ", log_file.read_text())

"""The supervisor's handling of workers that cannot start, on real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from inferd.settings import Settings
from inferd.supervisor import CANNOT_START
from tests.conftest import clean_environment

ROOT = Path(__file__).resolve().parents[1]

#: A supervisor of two workers that cannot start (as when their gRPC port was taken
#: between the supervisor's check and their bind).
SUPERVISE = """
import logging, sys
from inferd.settings import load_settings
from inferd.supervisor import Supervisor
from tests.test_supervisor import cannot_start

logging.basicConfig(level="INFO", format="%(name)s: %(message)s")
server = {"host": "127.0.0.1", "port": 0, "grpc_port": 0, "workers": 2}
settings = load_settings(None, {"models": {"repository": sys.argv[1]}, "server": server}, environ={})
sys.exit(Supervisor(settings, worker_main=cannot_start).run())
"""


def cannot_start(settings: Settings, worker_id: int, http_socket: socket.socket) -> None:
    # One write of the whole line: the two workers share the stderr pipe, and print()'s
    # separate write of the newline could let the other worker's line in between.
    os.write(2, f"worker {worker_id}: cannot start\n".encode())
    sys.exit(CANNOT_START)


def test_workers_that_cannot_start_stop_the_supervisor_without_restarts(tmp_path: Path) -> None:
    environment = clean_environment()
    finished = subprocess.run(
        [sys.executable, "-c", SUPERVISE, str(tmp_path)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 1, finished.stderr
    lines = finished.stderr.splitlines()
    # Each worker ran once: none was restarted.
    assert sorted(line for line in lines if line.endswith(": cannot start")) == [
        "worker 0: cannot start",
        "worker 1: cannot start",
    ]
    assert len([line for line in lines if "started (pid" in line]) == 2
    assert any(line.endswith("could not start: stopping every worker") for line in lines)

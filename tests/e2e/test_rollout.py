"""Guarded rollouts on a real server under load: a canary that fails 5 % of its requests is
rolled back on its own; a healthy one reaches 100 %."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, wait_until
from tests.rollout_models import BODY, write_model

#: Short steps and few requests, so a test takes seconds. The p99 guard is set out of reach:
#: the two versions are the same code, and their latencies on a busy machine are luck; the
#: in-process tests (tests/core/traffic/test_rollout.py) pin that guard.
FAST = {"step_interval_s": 0.2, "max_error_rate": 0.01, "max_p99_ratio": 1000}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    root = tmp_path_factory.mktemp("rollout-models")
    write_model(root, "failing", fail_every=20)
    write_model(root, "healthy", fail_every=0)
    log = tmp_path_factory.mktemp("rollout-log") / "stderr"
    with log.open("wb") as stderr:
        process = ServerProcess(
            root, env={"INFERENCE_SERVER__ALLOW_LOCAL_ADMIN": "true"}, stderr=stderr
        )
        try:
            process.wait_ready()
            yield process, log
        finally:
            process.stop()


class Load:
    """Requests that name no version, from a few threads, until the block ends; counts the
    answers by status and answering version."""

    def __init__(self, url: str, model: str, threads: int = 4) -> None:
        self.answers: collections.Counter[tuple[int, str | None]] = collections.Counter()
        self._url = f"{url}/v2/models/{model}/infer"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                answer = client.post(self._url, json=BODY)
                version = answer.json().get("model_version")
                with self._lock:
                    self.answers[(answer.status_code, version)] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def rollout(url: str, model: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/v2/models/{model}/rollout", timeout=10)
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()
    return doc


def run(url: str, model: str, plan: dict[str, Any]) -> tuple[dict[str, Any], Load]:
    """Start the rollout under load; the rollout's view once it has ended, and the load."""
    with Load(url, model) as load:
        answer = httpx.put(f"{url}/v2/models/{model}/rollout", json=plan, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["split"] == {"1": 95, "2": 5}
        wait_until(lambda: rollout(url, model)["state"] != "running", 120, "the rollout to end")
    return rollout(url, model), load


def versions_answering(url: str, model: str, requests: int = 20) -> set[str]:
    with httpx.Client(timeout=30) as client:
        answers = [
            client.post(f"{url}/v2/models/{model}/infer", json=BODY) for _ in range(requests)
        ]
    assert {a.status_code for a in answers} == {200}
    return {a.json()["model_version"] for a in answers}


def decision_count(url: str, model: str, decision: str) -> str:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    prefix = f'inferd_rollout_decisions_total{{decision="{decision}",model="{model}"}} '
    return next((line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)), "")


def test_a_canary_failing_5_percent_is_rolled_back(server: tuple[ServerProcess, Path]) -> None:
    process, log = server
    view, load = run(process.url, "failing", {"to": "2", "min_requests": 40, **FAST})
    assert view["state"] == "rolled_back"
    assert view["split"] == {"1": 100}
    assert [d["decision"] for d in view["decisions"] if d["decision"] != "hold"] == [
        "start",
        "rollback",
    ]
    reason = view["decisions"][-1]["reason"]
    assert reason.startswith("error rate guard: canary ")
    assert view["window"]["canary"]["errors"] >= 2
    assert view["window"]["stable"]["errors"] == 0
    # Only the canary failed, and only its every 20th request.
    failed = sum(n for (status, _), n in load.answers.items() if status != 200)
    assert {status for status, _ in load.answers} == {200, 500}
    canary = failed + load.answers[(200, "2")]
    assert failed == canary // 20
    assert versions_answering(process.url, "failing") == {"1"}
    assert decision_count(process.url, "failing", "rollback") == "1.0"
    assert f"rollout of model 'failing': rollback: {reason}" in log.read_text()


def test_a_healthy_canary_reaches_100_percent(server: tuple[ServerProcess, Path]) -> None:
    process, _ = server
    plan = {"to": "2", "steps": [5, 50, 100], "min_requests": 20, **FAST}
    view, load = run(process.url, "healthy", plan)
    assert view["state"] == "succeeded"
    assert view["split"] == {"2": 100}
    assert [d["decision"] for d in view["decisions"] if d["decision"] != "hold"] == [
        "start",
        "advance",
        "complete",
    ]
    assert {status for status, _ in load.answers} == {200}
    assert {version for _, version in load.answers} == {"1", "2"}
    assert versions_answering(process.url, "healthy") == {"2"}
    assert decision_count(process.url, "healthy", "complete") == "1.0"

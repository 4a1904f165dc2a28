"""Process set-up: the open-files limit follows ``limits.http.max_connections``; the
interpreter's switch interval and collector threshold follow ``performance``."""

from __future__ import annotations

import gc
import logging
import resource
import sys
from collections.abc import Iterator

import pytest

from inferd import server
from inferd.settings import PerformanceSettings


@pytest.fixture
def rlimit(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The process's (soft, hard) limit as a fake the test sets and reads."""
    limits = [(1024, 4096)]
    monkeypatch.setattr(server.resource, "getrlimit", lambda kind: limits[-1])
    monkeypatch.setattr(server.resource, "setrlimit", lambda kind, value: limits.append(value))
    return limits


def test_the_soft_limit_is_raised_to_what_connections_need(rlimit: list[tuple[int, int]]) -> None:
    server.raise_open_files_limit(2000)
    assert rlimit[-1] == (2000 + server.SPARE_FILES, 4096)


def test_a_hard_limit_too_low_is_said(
    rlimit: list[tuple[int, int]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="inferd"):
        server.raise_open_files_limit(4096)
    assert rlimit[-1] == (4096, 4096)
    assert "limits.http.max_connections=4096 needs" in caplog.text


def test_an_unlimited_soft_limit_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    monkeypatch.setattr(server.resource, "getrlimit", lambda kind: unlimited)
    monkeypatch.setattr(server.resource, "setrlimit", pytest.fail)
    server.raise_open_files_limit(4096)


@pytest.fixture
def interpreter() -> Iterator[None]:
    """The test process's switch interval and collector thresholds, put back after."""
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    yield
    sys.setswitchinterval(interval)
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("interpreter")
def test_the_interpreter_is_tuned_by_the_performance_settings() -> None:
    older = gc.get_threshold()[1:]
    server.tune_interpreter(PerformanceSettings())
    assert gc.get_threshold() == (10_000, *older)  # the older generations keep theirs
    assert sys.getswitchinterval() == pytest.approx(200e-6)
    server.tune_interpreter(PerformanceSettings(gc_threshold=700, gil_switch_interval_us=5000))
    assert gc.get_threshold()[0] == 700
    assert sys.getswitchinterval() == pytest.approx(5e-3)

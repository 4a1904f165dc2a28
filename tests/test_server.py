"""Process set-up: the open-files limit follows ``limits.http.max_connections``."""

from __future__ import annotations

import logging
import resource

import pytest

from inferd import server


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

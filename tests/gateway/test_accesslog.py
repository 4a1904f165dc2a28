"""The access log: one line per request, plain or JSON, client text escaped."""

from __future__ import annotations

import json

import pytest

from inferd.gateway.accesslog import Entry, access_log, escape


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "inferd.access"]


ENTRY = Entry("POST", "/v2/models/ti ny\n/infer", 200, 1.234, "r-1", "ti ny\n", None, "app")


def test_plain(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="inferd.access")
    access_log("plain").write(ENTRY)
    assert access_lines(caplog) == [
        "POST /v2/models/ti\\x20ny\\x0a/infer 200 1.23ms model=ti\\x20ny\\x0a version=- "
        "key=app id=r-1"
    ]


def test_json(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="inferd.access")
    access_log("json").write(ENTRY)
    (line,) = access_lines(caplog)
    assert "\n" not in line
    assert json.loads(line) == {
        "method": "POST",
        "route": "/v2/models/ti ny\n/infer",
        "status": 200,
        "latency_ms": 1.234,
        "request_id": "r-1",
        "model": "ti ny\n",
        "version": None,
        "principal": "app",
    }


def test_off_writes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="inferd.access")
    access_log("off").write(ENTRY)
    assert access_lines(caplog) == []


@pytest.mark.parametrize(
    ("text", "shown"), [(None, "-"), ("tiny", "tiny"), ("a\\b", "a\\x5cb"), ("\x1b[2J", "\\x1b[2J")]
)
def test_escape(text: str | None, shown: str) -> None:
    assert escape(text) == shown

"""The access log: one line per request, plain or JSON, client text escaped."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from typing import Final

import pytest

from inferd.gateway import accesslog
from inferd.gateway.accesslog import Entry, TurnWriter, access_log, escape


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


class _Stream(io.StringIO):
    """A text stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


STAMP: Final = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "


async def test_a_turns_lines_are_written_together_at_the_next_turn() -> None:
    stream = _Stream()
    writer = TurnWriter(stream)
    for n in range(3):
        writer.add(f"line {n}")
    assert stream.getvalue() == ""  # nothing yet: one write at the loop's next turn
    await asyncio.sleep(0)
    assert stream.writes == 1
    assert re.fullmatch(f"({STAMP}line \\d\n){{3}}", stream.getvalue())
    assert [line[24:] for line in stream.getvalue().splitlines()] == ["line 0", "line 1", "line 2"]
    writer.add("line 3")
    await asyncio.sleep(0)
    assert stream.writes == 2


async def test_a_line_from_another_thread_during_a_turn_is_written_at_once() -> None:
    stream = _Stream()
    writer = TurnWriter(stream)
    writer.add("on the loop")
    thread = threading.Thread(target=writer.add, args=("from a thread",))
    thread.start()
    thread.join()
    assert re.fullmatch(f"{STAMP}from a thread\n", stream.getvalue())
    await asyncio.sleep(0)
    assert [line[24:] for line in stream.getvalue().splitlines()] == [
        "from a thread",
        "on the loop",
    ]


def test_off_the_loop_a_line_is_written_at_once() -> None:
    stream = _Stream()
    TurnWriter(stream).add("alone")
    assert re.fullmatch(f"{STAMP}alone\n", stream.getvalue())


async def test_a_server_process_sends_lines_to_stderr_not_the_logger(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _Stream()
    monkeypatch.setattr(accesslog.sys, "stderr", stream)
    monkeypatch.setattr(accesslog, "_out", accesslog._out)  # restored after the test
    monkeypatch.setattr(accesslog.atexit, "register", lambda flush: flush)
    caplog.set_level("INFO", logger="inferd.access")
    accesslog.configure("json")
    access_log("json").write(ENTRY)
    await asyncio.sleep(0)
    assert access_lines(caplog) == []
    stamp, line = stream.getvalue()[:23], stream.getvalue()[24:]
    assert re.fullmatch(STAMP.strip(), stamp)
    assert json.loads(line)["request_id"] == "r-1"

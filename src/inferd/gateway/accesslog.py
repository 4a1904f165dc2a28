"""The access log: one line per request or call, plain or JSON.

A line holds the method (or ``grpc``/``ws``), the route or RPC, model, requested version,
status, latency, the key's name and the request id: never a body, a header value or a key.
Text from the client (paths, model names) has its control characters escaped.

Where lines go: in a server process (:func:`configure`), straight to stderr behind the
time, the lines of one event-loop turn in one write (:class:`TurnWriter`: no log record
and no system call per request); elsewhere (an application embedded in another program,
the tests), to the logger ``inferd.access``.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol, TextIO

import orjson

log = logging.getLogger("inferd.access")


def _to_logger(line: str) -> None:
    log.info("%s", line)


#: Where lines go: the logger, unless :func:`configure` sent them to stderr.
_out: Callable[[str], None] = _to_logger


@dataclasses.dataclass(slots=True)
class Entry:
    method: str  # GET, POST, WS (a WebSocket), GRPC
    route: str  # the path, or the full RPC name
    status: int | str  # HTTP status, WebSocket close code, gRPC status name
    latency_ms: float
    request_id: str
    model: str | None = None
    version: str | None = None
    principal: str | None = None


class AccessLog(Protocol):
    def write(self, entry: Entry) -> None: ...


class Off:
    def write(self, entry: Entry) -> None:
        pass


def escape(text: str | None) -> str:
    """``text`` for a plain line: control characters, spaces and backslashes as ``\\xNN``."""
    if text is None:
        return "-"
    if text.isprintable() and " " not in text and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c not in " \\" else f"\\x{ord(c):02x}" for c in text)


class Plain:
    def write(self, entry: Entry) -> None:
        _out(
            f"{entry.method} {escape(entry.route)} {entry.status} {entry.latency_ms:.2f}ms "
            f"model={escape(entry.model)} version={escape(entry.version)} "
            f"key={escape(entry.principal)} id={entry.request_id}"
        )


class Json:
    def write(self, entry: Entry) -> None:
        # orjson escapes control characters as JSON requires; invalid UTF-8 is replaced.
        fields = dataclasses.asdict(entry)
        fields["latency_ms"] = round(entry.latency_ms, 3)
        for name in ("route", "model", "version"):
            value = fields[name]
            if isinstance(value, str):
                fields[name] = value.encode("utf-8", "replace").decode("utf-8")
        _out(orjson.dumps(fields).decode())


#: ``server.access_log`` -> the log that writes it.
FORMATS: Final[dict[str, type[Off] | type[Plain] | type[Json]]] = {
    "off": Off,
    "plain": Plain,
    "json": Json,
}


def access_log(name: str) -> AccessLog:
    return FORMATS[name]()


class TurnWriter:
    """Lines to ``stream``, each behind the time as logging writes it
    (``2026-01-01 12:00:00,000``): the lines added in one turn of the running event loop
    are written together at the loop's next turn (one write and flush, not one per
    request); a line added off the loop's thread is written at once."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._second = -1
        self._stamp = ""
        self._thread = 0  # the thread whose loop flushes the lines of this turn

    def add(self, line: str) -> None:
        second, ns = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        text = f"{self._stamp},{ns // 1_000_000:03d} {line}\n"
        lines = self._lines
        if lines and threading.get_ident() == self._thread:
            # This turn's flush is scheduled on the loop of this thread. (Asking asyncio
            # for the running loop is a getpid system call per line.)
            lines.append(text)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write(text)
            return
        if not lines:
            loop.call_soon(self.flush)
            self._thread = threading.get_ident()
        lines.append(text)

    def flush(self) -> None:
        if self._lines:
            text = "".join(self._lines)
            self._lines.clear()
            self._write(text)

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


def configure(name: str) -> None:
    """Send access lines to stderr whatever ``server.log_level`` is (a server process),
    written by a :class:`TurnWriter`; what is left is written when the process exits."""
    global _out
    if name == "off":
        return
    writer = TurnWriter(sys.stderr)
    atexit.register(writer.flush)
    _out = writer.add

"""The access log: one line per request or call, plain or JSON, on logger ``inferd.access``.

A line holds the method (or ``grpc``/``ws``), the route or RPC, model, requested version,
status, latency, the key's name and the request id: never a body, a header value or a key.
Text from the client (paths, model names) has its control characters escaped.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final, Protocol

import orjson

log = logging.getLogger("inferd.access")


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
        log.info(
            "%s %s %s %.2fms model=%s version=%s key=%s id=%s",
            entry.method,
            escape(entry.route),
            entry.status,
            entry.latency_ms,
            escape(entry.model),
            escape(entry.version),
            escape(entry.principal),
            entry.request_id,
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
        log.info("%s", orjson.dumps(fields).decode())


#: ``server.access_log`` -> the log that writes it.
FORMATS: Final[dict[str, type[Off] | type[Plain] | type[Json]]] = {
    "off": Off,
    "plain": Plain,
    "json": Json,
}


def access_log(name: str) -> AccessLog:
    return FORMATS[name]()


def configure(name: str) -> None:
    """Send access lines to stderr whatever ``server.log_level`` is (a server process)."""
    if name == "off":
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

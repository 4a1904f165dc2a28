"""What the sync and async HTTP clients share: their options, and how they build
WebSocket and stream messages and read stream answers."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import orjson

from inferd.client import calls
from inferd.client.calls import Call, Options
from inferd.client.codec import InferResult, Inputs, decode_document, encode_request, tensors
from inferd.client.errors import http_error
from inferd.client.retry import Retry

NO_BINARY = memoryview(b"")


class HttpBase:
    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        binary: bool = True,
        verify: bool | str | ssl.SSLContext = True,
        routing_header: str = "X-Routing-Key",
        connections: int = 100,
    ) -> None:
        """``url`` of the server's HTTP port; ``api_key`` sent as a bearer token;
        ``timeout`` each call's deadline in seconds (None: the server's default, and 60 s
        of waiting here); ``retry`` the retry policy (``Retry(attempts=0)`` turns it off);
        ``binary`` whether tensors travel in the binary extension (else JSON ``data``);
        ``verify`` False, a CA bundle's path or an SSL context for https; ``connections``
        the most connections kept open."""
        self.options = Options(
            url, api_key, timeout, retry or Retry(), binary, verify, routing_header
        )
        self._limits = httpx.Limits(
            max_connections=connections, max_keepalive_connections=connections
        )

    def _infer_call(self, model: str, inputs: Inputs, **kw: Any) -> Call:
        return calls.infer_call(self.options, model, inputs, **_infer_defaults(kw))

    def _websocket(self, model: str, version: str | None, label: str | None) -> str:
        return self.options.websocket_url(calls.model_path(model, version, label, "stream"))

    def _websocket_headers(self, request_id: str | None, routing_key: str | None) -> dict[str, str]:
        return calls.headers(self.options, request_id, routing_key, None)


def _infer_defaults(kw: dict[str, Any]) -> dict[str, Any]:
    """The keywords of :meth:`Client.infer`, each defaulting to None."""
    names = (
        "version",
        "label",
        "outputs",
        "datatypes",
        "binary",
        "parameters",
        "request_id",
        "routing_key",
        "timeout_s",
    )
    unknown = kw.keys() - set(names)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
    return {name: kw.get(name) for name in names}


def stream_message(model: str, inputs: Inputs, **kw: Any) -> bytes:
    """One V2 message of a WebSocket stream (JSON data: streams carry no binary)."""
    body, _ = encode_request(
        tensors(inputs, kw.get("datatypes")), kw.get("outputs"), False, kw.get("parameters")
    )
    return body


def stream_answer(frame: str | bytes, request_id: str | None) -> InferResult:
    doc = orjson.loads(frame)
    if "error" in doc:
        raise http_error(int(doc.get("code", 500)), str(doc["error"]), request_id, None)
    return decode_document(doc, NO_BINARY, request_id, None)


def sse_event(line: str, request_id: str | None) -> dict[str, Any]:
    doc = calls.sse_data(line)
    if doc is None:
        return {}
    if "error" in doc:
        raise http_error(500, str(doc["error"]), request_id, None)
    return doc

"""What an HTTP client sends and how it reads the answer, shared by the sync and async
clients (``client/http.py``), which only move the bytes and wait."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote

import httpx
import orjson

from inferd.client.codec import InferResult, Inputs, decode_response, encode_request, tensors
from inferd.client.errors import RETRY_STATUS, http_error, retry_after
from inferd.client.retry import Retry, deadline_of
from inferd.errors import InferdError, InvalidArgument
from inferd.http.codec import HEADER_LENGTH
from inferd.http.headers import TIMEOUT_HEADER

#: Seconds an HTTP call may take when neither the call nor the client says.
DEFAULT_TIMEOUT_S: Final = 60.0
REQUEST_ID: Final = "x-request-id"


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """Everything a client is built with, checked once."""

    url: str
    api_key: str | None = None
    timeout_s: float | None = None
    retry: Retry = dataclasses.field(default_factory=Retry)
    binary: bool = True
    verify: bool | str | ssl.SSLContext = True
    routing_header: str = "X-Routing-Key"

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise InvalidArgument(f"url must start with http:// or https://, got {self.url!r}")

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    def ssl_context(self) -> bool | ssl.SSLContext:
        """httpx's ``verify``: a CA bundle path becomes a context trusting it."""
        if isinstance(self.verify, str):
            return ssl.create_default_context(cafile=self.verify)
        return self.verify

    def websocket_url(self, path: str) -> str:
        return "ws" + self.base.removeprefix("http") + path


@dataclasses.dataclass(slots=True)
class Call:
    """One HTTP call, ready to send (and to send again when ``idempotent``)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None
    idempotent: bool = True
    deadline: float | None = None
    #: Statuses that are an answer, not an error (readiness probes answer 503).
    expected: frozenset[int] = frozenset({200})


def model_path(model: str, version: str | None, label: str | None, action: str) -> str:
    """``/v2/models/{m}[/versions/{v}]/{action}``; a label stands where a version would."""
    if version is not None and label is not None:
        raise InvalidArgument("give a version or a label, not both")
    chosen = version if version is not None else label
    path = f"/v2/models/{quote(model, safe='')}"
    if chosen is not None:
        path += f"/versions/{quote(chosen, safe='')}"
    return f"{path}/{action}" if action else path


def headers(
    options: Options,
    request_id: str | None,
    routing_key: str | None,
    timeout_s: float | None,
) -> dict[str, str]:
    """Headers every call carries: the key, the request id, the routing key, the deadline."""
    out: dict[str, str] = {}
    if options.api_key is not None:
        out["authorization"] = f"Bearer {options.api_key}"
    if request_id is not None:
        out[REQUEST_ID] = request_id
    if routing_key is not None:
        out[options.routing_header] = routing_key
    if timeout_s is not None:
        out[TIMEOUT_HEADER] = f"{timeout_s * 1000:.0f}"
    return out


def call_timeout(options: Options, timeout_s: float | None) -> float | None:
    return timeout_s if timeout_s is not None else options.timeout_s


def get(options: Options, path: str, timeout_s: float | None = None, **kw: Any) -> Call:
    timeout_s = call_timeout(options, timeout_s)
    return Call(
        "GET",
        path,
        headers(options, None, None, timeout_s),
        deadline=deadline_of(timeout_s or DEFAULT_TIMEOUT_S),
        **kw,
    )


def infer_call(
    options: Options,
    model: str,
    inputs: Inputs,
    *,
    version: str | None,
    label: str | None,
    outputs: Iterable[str] | None,
    datatypes: Mapping[str, str] | None,
    binary: bool | None,
    parameters: Mapping[str, Any] | None,
    request_id: str | None,
    routing_key: str | None,
    timeout_s: float | None,
) -> Call:
    timeout_s = call_timeout(options, timeout_s)
    body, content = encode_request(
        tensors(inputs, datatypes),
        outputs,
        options.binary if binary is None else binary,
        parameters,
    )
    return Call(
        "POST",
        model_path(model, version, label, "infer"),
        {**headers(options, request_id, routing_key, timeout_s), **content},
        body,
        deadline=deadline_of(timeout_s or DEFAULT_TIMEOUT_S),
    )


def json_call(
    options: Options, method: str, path: str, doc: Any, idempotent: bool, **kw: Any
) -> Call:
    timeout_s = call_timeout(options, kw.pop("timeout_s", None))
    return Call(
        method,
        path,
        {**headers(options, None, None, None), "content-type": "application/json"},
        orjson.dumps(doc),
        idempotent=idempotent,
        deadline=deadline_of(timeout_s or DEFAULT_TIMEOUT_S),
        **kw,
    )


def refusal(response: httpx.Response) -> InferdError:
    """The error for an answer that is not one the call expected."""
    try:
        message = str(orjson.loads(response.content)["error"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = response.text[:200] or response.reason_phrase
    return http_error(
        response.status_code,
        message,
        response.headers.get(REQUEST_ID),
        retry_after(response.headers.get("retry-after")),
    )


def retryable(call: Call, response: httpx.Response) -> bool:
    return call.idempotent and response.status_code in RETRY_STATUS


def infer_result(response: httpx.Response) -> InferResult:
    return decode_response(
        response.content,
        response.headers.get(HEADER_LENGTH),
        response.headers.get(REQUEST_ID),
        response.headers.get("x-cache"),
    )


def json_of(response: httpx.Response) -> Any:
    return orjson.loads(response.content)


def generate_body(inputs: Mapping[str, Any], parameters: Mapping[str, Any] | None) -> bytes:
    """Triton's generate extension: the inputs by name (plain JSON values), and parameters."""
    doc: dict[str, Any] = {
        name: value.tolist() if hasattr(value, "tolist") else value
        for name, value in inputs.items()
    }
    if parameters:
        doc["parameters"] = dict(parameters)
    return orjson.dumps(doc)


def sse_data(line: str) -> dict[str, Any] | None:
    """The JSON of one ``data:`` line of an event stream (None for any other line)."""
    if not line.startswith("data:"):
        return None
    doc: dict[str, Any] = orjson.loads(line[5:].strip())
    return doc

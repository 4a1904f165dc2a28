"""inferd's blocking HTTP client (:class:`Client`), on httpx; the async one is
:class:`inferd.client.aio.AsyncClient`.

Calls are built by ``client/calls.py`` and answers read there; refusals raise inferd's
exception tree (``client/errors.py``); 429 and 503 answers to idempotent calls are tried
again (``client/retry.py``).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from inferd.client import calls
from inferd.client.base import HttpBase, sse_event, stream_answer, stream_message
from inferd.client.calls import Call
from inferd.client.codec import InferResult, Inputs
from inferd.client.errors import timed_out, unreachable
from inferd.client.retry import remaining
from inferd.errors import InferdError


class Client(HttpBase):
    """A blocking client; use it as a context manager, or call :meth:`close`."""

    def __init__(self, url: str = "http://127.0.0.1:8080", **options: Any) -> None:
        super().__init__(url, **options)
        self._http = httpx.Client(
            base_url=self.options.base, verify=self.options.ssl_context(), limits=self._limits
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> httpx.Response:
        tried = 0
        while True:
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    content=call.body,
                    headers=call.headers,
                    timeout=remaining(call.deadline),
                )
            except httpx.TimeoutException:
                raise timed_out(self.options.base) from None
            except httpx.TransportError as exc:
                raise unreachable(self.options.base, exc) from None
            if response.status_code in call.expected:
                return response
            error = calls.refusal(response)
            tried += 1
            wait = self._wait(call, response, error, tried)
            if wait is None:
                raise error
            time.sleep(wait)

    def _wait(
        self, call: Call, response: httpx.Response, error: InferdError, tried: int
    ) -> float | None:
        if not calls.retryable(call, response):
            return None
        return self.options.retry.wait(tried, error.retry_after_s, call.deadline)

    # -- health and metadata ---------------------------------------------------------------

    def live(self) -> bool:
        return bool(calls.json_of(self._send(calls.get(self.options, "/v2/health/live")))["live"])

    def ready(self) -> bool:
        call = calls.get(self.options, "/v2/health/ready", expected=frozenset({200, 503}))
        call.idempotent = False  # 503 is the answer here, not a reason to wait
        return self._send(call).status_code == 200

    def model_ready(self, model: str, version: str | None = None) -> bool:
        path = calls.model_path(model, version, None, "ready")
        call = calls.get(self.options, path, expected=frozenset({200, 503}))
        call.idempotent = False
        return self._send(call).status_code == 200

    def server_metadata(self) -> dict[str, Any]:
        doc: dict[str, Any] = calls.json_of(self._send(calls.get(self.options, "/v2")))
        return doc

    def model_metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        path = calls.model_path(model, version, None, "")
        doc: dict[str, Any] = calls.json_of(self._send(calls.get(self.options, path)))
        return doc

    def overview(self) -> dict[str, Any]:
        """The dashboard's view of the server (``GET /dashboard/state``): what the key's
        scope may read of models, versions, states, splits, rollouts and live numbers."""
        doc: dict[str, Any] = calls.json_of(self._send(calls.get(self.options, "/dashboard/state")))
        return doc

    def repository_index(self) -> list[dict[str, Any]]:
        """Every model version and its state (admin)."""
        call = calls.json_call(self.options, "POST", "/v2/repository/index", {}, idempotent=True)
        rows: list[dict[str, Any]] = calls.json_of(self._send(call))
        return rows

    # -- inference ---------------------------------------------------------------------------

    def infer(self, model: str, inputs: Inputs, **options: Any) -> InferResult:
        """Run ``model`` on ``inputs`` (name -> array). Keywords: ``version`` or ``label``,
        ``outputs`` (names to return; default all), ``datatypes`` (name -> V2 datatype,
        where the array's is not meant), ``binary``, ``parameters``, ``request_id``,
        ``routing_key``, ``timeout_s``."""
        return calls.infer_result(self._send(self._infer_call(model, inputs, **options)))

    def generate_stream(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        version: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Triton's generate extension as Server-Sent Events: each partial answer of a
        streaming model (its outputs by name, as JSON values), as it comes."""
        call = calls.json_call(
            self.options,
            "POST",
            calls.model_path(model, version, None, "generate_stream"),
            None,
            idempotent=False,
            timeout_s=timeout_s,
        )
        call.body = calls.generate_body(inputs, parameters)
        call.headers.update(calls.headers(self.options, request_id, None, None))
        try:
            with self._http.stream(
                "POST",
                call.path,
                content=call.body,
                headers=call.headers,
                timeout=remaining(call.deadline),
            ) as response:
                if response.status_code != 200:
                    response.read()
                    raise calls.refusal(response)
                for line in response.iter_lines():
                    event = sse_event(line, response.headers.get(calls.REQUEST_ID))
                    if event:
                        yield event
        except httpx.TimeoutException:
            raise timed_out(self.options.base) from None
        except httpx.TransportError as exc:
            raise unreachable(self.options.base, exc) from None

    def stream(
        self,
        model: str,
        inputs: Inputs,
        *,
        version: str | None = None,
        label: str | None = None,
        request_id: str | None = None,
        routing_key: str | None = None,
        timeout_s: float | None = None,
        **kw: Any,
    ) -> Iterator[InferResult]:
        """One V2 request over the WebSocket stream; its answers as they come (a streaming
        model's partials, ``final`` False, then the end)."""
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        url = self._websocket(model, version, label)
        ssl_context = self.options.ssl_context() if url.startswith("wss") else None
        try:
            with connect(
                url,
                additional_headers=self._websocket_headers(request_id, routing_key),
                ssl=ssl_context if isinstance(ssl_context, ssl.SSLContext) else None,
                open_timeout=timeout_s or self.options.timeout_s or calls.DEFAULT_TIMEOUT_S,
            ) as socket:
                socket.send(stream_message(model, inputs, **kw).decode())
                while True:
                    answer = stream_answer(socket.recv(timeout=timeout_s), request_id)
                    if answer.outputs:
                        yield answer
                    if answer.final:
                        return
        except TimeoutError:
            raise timed_out(url) from None
        except (OSError, WebSocketException) as exc:
            raise unreachable(url, exc) from None

"""inferd's HTTP client, sync (:class:`Client`) and async (:class:`AsyncClient`), on httpx.

Both build the same calls (``client/calls.py``) and read the same answers; they differ only
in how they send and wait. Refusals raise inferd's exception tree (``client/errors.py``);
429 and 503 answers to idempotent calls are tried again (``client/retry.py``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from inferd.client import calls
from inferd.client.calls import Call, Options
from inferd.client.codec import InferResult, Inputs, decode_document
from inferd.client.errors import http_error, timed_out, unreachable
from inferd.client.retry import Retry, remaining
from inferd.errors import InferdError

NO_BINARY = memoryview(b"")


class _Base:
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


def _stream_message(model: str, inputs: Inputs, **kw: Any) -> bytes:
    """One V2 message of a WebSocket stream (JSON data: streams carry no binary)."""
    from inferd.client.codec import encode_request, tensors

    body, _ = encode_request(
        tensors(inputs, kw.get("datatypes")), kw.get("outputs"), False, kw.get("parameters")
    )
    return body


def _stream_answer(frame: str | bytes, request_id: str | None) -> InferResult:
    doc = orjson.loads(frame)
    if "error" in doc:
        raise http_error(int(doc.get("code", 500)), str(doc["error"]), request_id, None)
    return decode_document(doc, NO_BINARY, request_id, None)


class Client(_Base):
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
                    event = _event(line, response.headers.get(calls.REQUEST_ID))
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
                socket.send(_stream_message(model, inputs, **kw).decode())
                while True:
                    answer = _stream_answer(socket.recv(timeout=timeout_s), request_id)
                    if answer.outputs:
                        yield answer
                    if answer.final:
                        return
        except TimeoutError:
            raise timed_out(url) from None
        except (OSError, WebSocketException) as exc:
            raise unreachable(url, exc) from None


def _event(line: str, request_id: str | None) -> dict[str, Any]:
    doc = calls.sse_data(line)
    if doc is None:
        return {}
    if "error" in doc:
        raise http_error(500, str(doc["error"]), request_id, None)
    return doc


class AsyncClient(_Base):
    """The same calls as :class:`Client`, awaited; use it as an async context manager."""

    def __init__(self, url: str = "http://127.0.0.1:8080", **options: Any) -> None:
        super().__init__(url, **options)
        self._http = httpx.AsyncClient(
            base_url=self.options.base, verify=self.options.ssl_context(), limits=self._limits
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        tried = 0
        while True:
            try:
                response = await self._http.request(
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
            wait = (
                self.options.retry.wait(tried, error.retry_after_s, call.deadline)
                if calls.retryable(call, response)
                else None
            )
            if wait is None:
                raise error
            await asyncio.sleep(wait)

    async def live(self) -> bool:
        response = await self._send(calls.get(self.options, "/v2/health/live"))
        return bool(calls.json_of(response)["live"])

    async def ready(self) -> bool:
        call = calls.get(self.options, "/v2/health/ready", expected=frozenset({200, 503}))
        call.idempotent = False
        return (await self._send(call)).status_code == 200

    async def model_metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        path = calls.model_path(model, version, None, "")
        doc: dict[str, Any] = calls.json_of(await self._send(calls.get(self.options, path)))
        return doc

    async def overview(self) -> dict[str, Any]:
        """See :meth:`Client.overview`."""
        response = await self._send(calls.get(self.options, "/dashboard/state"))
        doc: dict[str, Any] = calls.json_of(response)
        return doc

    async def infer(self, model: str, inputs: Inputs, **options: Any) -> InferResult:
        """See :meth:`Client.infer`."""
        call = self._infer_call(model, inputs, **options)
        return calls.infer_result(await self._send(call))

    async def generate_stream(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        version: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """See :meth:`Client.generate_stream`."""
        path = calls.model_path(model, version, None, "generate_stream")
        call = calls.json_call(
            self.options, "POST", path, None, idempotent=False, timeout_s=timeout_s
        )
        call.body = calls.generate_body(inputs, parameters)
        call.headers.update(calls.headers(self.options, request_id, None, None))
        try:
            async with self._http.stream(
                "POST",
                call.path,
                content=call.body,
                headers=call.headers,
                timeout=remaining(call.deadline),
            ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise calls.refusal(response)
                async for line in response.aiter_lines():
                    event = _event(line, response.headers.get(calls.REQUEST_ID))
                    if event:
                        yield event
        except httpx.TimeoutException:
            raise timed_out(self.options.base) from None
        except httpx.TransportError as exc:
            raise unreachable(self.options.base, exc) from None

    async def stream(
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
    ) -> AsyncIterator[InferResult]:
        """See :meth:`Client.stream`."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        url = self._websocket(model, version, label)
        ssl_context = self.options.ssl_context() if url.startswith("wss") else None
        try:
            async with connect(
                url,
                additional_headers=self._websocket_headers(request_id, routing_key),
                ssl=ssl_context if isinstance(ssl_context, ssl.SSLContext) else None,
                open_timeout=timeout_s or self.options.timeout_s or calls.DEFAULT_TIMEOUT_S,
            ) as socket:
                await socket.send(_stream_message(model, inputs, **kw).decode())
                while True:
                    frame = await asyncio.wait_for(socket.recv(), timeout_s)
                    answer = _stream_answer(frame, request_id)
                    if answer.outputs:
                        yield answer
                    if answer.final:
                        return
        except TimeoutError:
            raise timed_out(url) from None
        except (OSError, WebSocketException) as exc:
            raise unreachable(url, exc) from None

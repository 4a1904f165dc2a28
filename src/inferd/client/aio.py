"""inferd's async HTTP client (:class:`AsyncClient`): the calls of
:class:`inferd.client.Client`, awaited."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from inferd.client import calls
from inferd.client.base import HttpBase, sse_event, stream_answer, stream_message
from inferd.client.calls import Call
from inferd.client.codec import InferResult, Inputs
from inferd.client.errors import timed_out, unreachable
from inferd.client.retry import remaining


class AsyncClient(HttpBase):
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

    async def model_ready(self, model: str, version: str | None = None) -> bool:
        path = calls.model_path(model, version, None, "ready")
        call = calls.get(self.options, path, expected=frozenset({200, 503}))
        call.idempotent = False
        return (await self._send(call)).status_code == 200

    async def server_metadata(self) -> dict[str, Any]:
        doc: dict[str, Any] = calls.json_of(await self._send(calls.get(self.options, "/v2")))
        return doc

    async def repository_index(self) -> list[dict[str, Any]]:
        """See :meth:`Client.repository_index`."""
        call = calls.json_call(self.options, "POST", "/v2/repository/index", {}, idempotent=True)
        rows: list[dict[str, Any]] = calls.json_of(await self._send(call))
        return rows

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
                    event = sse_event(line, response.headers.get(calls.REQUEST_ID))
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
                await socket.send(stream_message(model, inputs, **kw).decode())
                while True:
                    frame = await asyncio.wait_for(socket.recv(), timeout_s)
                    answer = stream_answer(frame, request_id)
                    if answer.outputs:
                        yield answer
                    if answer.final:
                        return
        except TimeoutError:
            raise timed_out(url) from None
        except (OSError, WebSocketException) as exc:
            raise unreachable(url, exc) from None

"""The one policy of long-lived streams: WebSocket, gRPC request streams and SSE.

- Opening a stream is admitted as a request of operation ``STREAM`` is (the caller's key
  and scope; one count against the rate limit): the HTTP front does it for a WebSocket
  handshake and an SSE request, the gRPC edge for a streaming call.
- Every message a stream of requests carries counts once more against the caller's rate
  limit, on the model it names, as a request would (:meth:`StreamPolicy.message`). A
  message refused gets its error answer in its turn and the stream goes on; the stream's
  own message rate (``stream.max_messages_per_second``) is the ordered stream's
  (core/serving/streams.py).
- An SSE stream carries one request: its opening is its count.
- How a stream ends (the empty final response) is decided in the data plane
  (``InferenceService.stream``); errors go through each transport's one renderer and carry
  the stream's request id.
"""

from __future__ import annotations

import contextvars
from typing import Final

from inferd.gateway.admission import Gateway, Principal


class StreamPolicy:
    """The policy of one open stream, for one caller."""

    def __init__(self, gateway: Gateway, principal: Principal) -> None:
        self._gateway = gateway
        self._principal = principal

    async def message(self, model: str | None) -> None:
        """Count one message on ``model``; raises the refusal (RateLimited) past the limit."""
        await self._gateway.count(self._principal, model)


#: The policy of the gRPC stream being served (set by the gRPC edge for calls that stream
#: their requests); None outside one.
current: Final[contextvars.ContextVar[StreamPolicy | None]] = contextvars.ContextVar(
    "inferd_stream_policy", default=None
)

"""The caller of the request being served: its API key's name (None without a key) and
its address, held in a context variable by the front (HTTP) and the gRPC edge's wrapper for
what belongs to a caller (system shared memory regions, core/serving/shm.py)."""

from __future__ import annotations

import contextvars
from typing import Final

#: (key name, address); (None, None) outside a request.
current: Final[contextvars.ContextVar[tuple[str | None, str | None]]] = contextvars.ContextVar(
    "inferd_caller", default=(None, None)
)

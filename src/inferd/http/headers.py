"""Request headers the REST adapter understands beyond the protocol's own."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Final

from inferd.errors import InvalidArgument, clip

#: Per-request deadline in milliseconds; overrides the model's and the server's default.
TIMEOUT_HEADER: Final = "inference-timeout-ms"


def deadline_from(headers: Mapping[str, str]) -> float | None:
    """The absolute ``time.monotonic()`` deadline a request asks for, if any (``headers``
    by lower-case name)."""
    raw = headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        milliseconds = float(raw)
    except ValueError:
        milliseconds = math.nan
    if not math.isfinite(milliseconds) or milliseconds <= 0:
        raise InvalidArgument(
            f"Inference-Timeout-Ms must be a positive number, got {clip(repr(raw))}"
        )
    return time.monotonic() + milliseconds / 1000

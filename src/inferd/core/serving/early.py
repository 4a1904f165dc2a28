"""A latency target's refusal before the request's body is decoded.

A request that its model's target will refuse costs the event loop what it reads and
decodes of it; under a load past what the model carries, most requests are refused, and
that work is what delays the requests behind them in the loop (the wait the target cannot
time, see looplag.py). A transport that knows the model before it decodes (the V2 REST
infer route: the model is in its path) asks here first, when the model is in
:data:`~inferd.core.serving.latency.TARGETED` (a dict lookup on the route, no call for a
model without a target):

- the version is the one the router would choose for the request (its version or label,
  its routing key);
- the target's admission is asked for a request of the mean rows per request of that
  version (its rows are not known yet); over the budget, the request is refused as it
  would be at the queue: Unavailable (503 with ``Retry-After``), counted in
  ``inferd_early_refusals_total`` (reason ``target``), in the version's failures and in
  ``inferd_requests_total{status="unavailable"}``.

A request admitted here is decoded and asked again at the queue with its own rows (and
its deadline, which may be in the body). Anything else that would refuse it (an unknown
version, a routing key too long) is left to the usual path, which says so.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from inferd.core.serving.latency import TargetBatcher
from inferd.errors import ErrorCode, InferdError, Unavailable

if TYPE_CHECKING:
    from inferd.core.service import InferenceService


def refuse(
    service: InferenceService,
    model: str,
    version: str | None,
    key: str | None,
    arrived: float | None,
    protocol: str = "rest",
) -> None:
    """Raise Unavailable when ``model``'s target would refuse the request at its queue now
    (see the module's rule); return when it would not, or cannot tell."""
    try:
        loaded = service.router.resolve(model, version, key)
    except InferdError:
        return  # the usual path refuses it, and says why
    batcher = loaded.batcher
    if not isinstance(batcher, TargetBatcher):
        return
    try:
        batcher.admit()
    except Unavailable as exc:
        exc.model_version = loaded.version
        loaded.stats.fail.add(0.0 if arrived is None else time.monotonic() - arrived)
        service.metrics.observe(
            loaded.model, loaded.version, protocol, ErrorCode.UNAVAILABLE.value, 0.0
        )
        raise

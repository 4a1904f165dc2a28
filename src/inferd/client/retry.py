"""When a client tries a call again: bounded retries of idempotent calls on 429 and 503.

Both answers mean the server refused before doing the work (a full queue, a spent rate
limit, a server not ready or draining), so another try cannot do the work twice. Only
idempotent calls are tried again: reads, and inference (the same inputs give the same
answer and change nothing on the server). Control calls (load, unload) never are.

The wait is the server's ``Retry-After`` when it sent one, else an exponential back-off
(``backoff_s``, doubled each try). A wait longer than ``max_wait_s``, or one that would end
past the call's deadline, is not waited: the refusal is raised at once.
"""

from __future__ import annotations

import dataclasses
import time


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """How many more tries (``attempts``; 0 turns retrying off) and how long to wait."""

    attempts: int = 3
    backoff_s: float = 0.05
    max_wait_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 0 or self.backoff_s < 0 or self.max_wait_s < 0:
            raise ValueError("Retry: attempts, backoff_s and max_wait_s must not be negative")

    def wait(self, tried: int, retry_after_s: float | None, deadline: float | None) -> float | None:
        """Seconds to wait before try ``tried + 1`` (``tried`` refusals so far), or None
        when there is to be no other try."""
        if tried > self.attempts:
            return None
        wait = self.backoff_s * 2 ** (tried - 1) if retry_after_s is None else retry_after_s
        if wait > self.max_wait_s:
            return None
        if deadline is not None and time.monotonic() + wait >= deadline:
            return None
        return wait


NO_RETRY = Retry(attempts=0)


def deadline_of(timeout_s: float | None) -> float | None:
    """The monotonic deadline of a call given ``timeout_s`` seconds (None: none)."""
    if timeout_s is None:
        return None
    if timeout_s <= 0:
        raise ValueError(f"timeout must be positive, got {timeout_s}")
    return time.monotonic() + timeout_s


def remaining(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (at least a millisecond, so a late call still
    asks the server instead of failing here)."""
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.001)

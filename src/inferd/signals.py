"""The signals that stop a server, and keeping them from killing it while it starts.

A server process blocks them from its first step (a worker: from its spawn, the mask
survives exec) until its event loop handles them, so a stop request at any moment of
start-up is a drain, never a kill: the signal waits, blocked, and is handled once the loop
can.
"""

from __future__ import annotations

import signal
from typing import Final

STOP_SIGNALS: Final = frozenset({signal.SIGTERM, signal.SIGINT})


def block_stop_signals() -> set[int | signal.Signals]:
    """Block the stop signals in this thread (and the threads and processes it starts);
    the mask it had."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def unblock_stop_signals() -> None:
    """Deliver the stop signals again, those that arrived while they were blocked first."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def restore_mask(mask: set[int | signal.Signals]) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)

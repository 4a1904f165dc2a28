"""The gateway's admission in process: CPU time per check, with an API key and each rate-limit
strategy in memory (limit far above the load, so every check admits), against no limiter.

Each figure is the least, over ``--repeats`` runs of ``--checks`` checks, of the thread's
CPU time per check: the code hot in the CPU's caches, so a floor; in a loaded server a
check costs more. Runs in a few seconds, needs no server and no model.

    python benchmarks/admission.py
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from inferd.gateway.admission import Gateway
from inferd.gateway.operations import Operation
from inferd.gateway.ratelimit import RateLimiter, limiter_for
from inferd.settings import RateLimitSettings, ServerSettings, StorageSettings

KEY = "bench-key-0123456789abcdef"
STRATEGIES = ("fixed-window", "sliding-window", "moving-window")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=2000, help="checks per run")
    parser.add_argument("--repeats", type=int, default=30, help="runs per configuration")
    return parser.parse_args()


def limiter(strategy: str) -> RateLimiter:
    settings = RateLimitSettings(enabled=True, requests_per_minute=10**9, strategy=strategy)
    return limiter_for(settings, StorageSettings())


async def least_us(check: Callable[[], Awaitable[None]], checks: int, repeats: int) -> float:
    """The least thread CPU time per call of ``check()``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        for _ in range(checks):
            await check()
        best = min(best, (time.thread_time() - started) / checks * 1e6)
    return best


async def main() -> None:
    options = parse()
    server = ServerSettings(
        api_keys=[f"bench:infer:{hashlib.sha256(KEY.encode()).hexdigest()}"],
        require_api_key=True,
    )
    gateways = {"no rate limit": Gateway(server)}
    limiters = {}
    for strategy in STRATEGIES:
        limiters[strategy] = limiter(strategy)
        gateways[strategy] = Gateway(server, limiters[strategy])
    principal = gateways["no rate limit"].principal(KEY, "127.0.0.1")
    print(f"{'':16s} {'limiter.check':>14s} {'gateway.admit':>14s}   (us of CPU per call)")
    for name, gateway in gateways.items():
        # moving-window keeps one entry per hit: fewer runs keep its list short
        repeats = options.repeats if name != "moving-window" else max(1, options.repeats // 3)
        admit = await least_us(
            functools.partial(gateway.admit, principal, Operation.INFER, "tiny"),
            options.checks,
            repeats,
        )
        check = "-"
        if name in limiters:
            one = limiters[name]
            checked = await least_us(
                functools.partial(one.check, principal.rate_key, "tiny"), options.checks, repeats
            )
            check = f"{checked:.2f}"
        print(f"{name:16s} {check:>14s} {admit:14.2f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())

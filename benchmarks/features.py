"""What each optional feature costs alone, on the tiny model.

One server per feature (API key, rate limit, access log, cache, 90/10 split), one with
every feature off and one with all of them on, as ``make bench``'s features point has
them; all run at once and are loaded in interleaved rounds (tiny V2 JSON, 64 connections,
another input in every request, so the cache misses; and the cache once more with the
same input in every request, so that it answers them all). Prints each server's median req/s
and server CPU per request, and both against the server with every feature off; writes
nothing.

    .venv/bin/python benchmarks/features.py               # 5 rounds of 3 s
    .venv/bin/python benchmarks/features.py --rounds 8
    .venv/bin/python benchmarks/features.py --together    # and features in groups
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import statistics
import tempfile
from pathlib import Path
from typing import Final

import hotpath as h

DIGEST: Final = hashlib.sha256(h.KEY.encode()).hexdigest()
#: Server -> (its config file's text, what its model.yaml adds, whether it sends the key).
SERVERS: Final[dict[str, tuple[str, str, bool]]] = {
    "off": ("", "", False),
    "api key": (
        f'server:\n  require_api_key: true\n  api_keys: ["bench:infer:{DIGEST}"]\n',
        "",
        True,
    ),
    "rate limit": (
        "safeguards:\n  rate_limit:\n    enabled: true\n    requests_per_minute: 1000000000\n",
        "",
        False,
    ),
    "access log": ("server:\n  access_log: plain\n", "", False),
    "cache (misses)": ("", h.CACHE_YAML, False),
    "cache (hits)": ("", h.CACHE_YAML, False),
    "90/10 split": ("", h.SPLIT_YAML, False),
    "all on": (h.FEATURES_YAML.format(digest=DIGEST), h.SPLIT_YAML + h.CACHE_YAML, True),
}
#: ``--together``: features in groups, to see whether they add up.
TOGETHER: Final[dict[str, tuple[str, str, bool]]] = {
    "key, rate limit, log": (h.FEATURES_YAML.format(digest=DIGEST), "", True),
    "cache and split": ("", h.SPLIT_YAML + h.CACHE_YAML, False),
    "all but the cache": (h.FEATURES_YAML.format(digest=DIGEST), h.SPLIT_YAML, True),
    "all but the split": (h.FEATURES_YAML.format(digest=DIGEST), h.CACHE_YAML, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per point")
    parser.add_argument(
        "--together", action="store_true", help="also features in groups (do they add up?)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferd-features-") as folder:
        servers: list[h.Server] = []
        try:
            points = measure(args, Path(folder), servers)
        finally:
            for server in servers:
                server.stop()
    off = statistics.median(r.rate for r in points["off"].results)
    off_cpu = statistics.median(map(_cpu_us, points["off"].results))
    print("server | req/s | vs off | server CPU us/request | vs off")
    for name, point in points.items():
        rate = statistics.median(r.rate for r in point.results)
        cpu = statistics.median(map(_cpu_us, point.results))
        print(f"{name} | {rate:,.0f} | {rate / off:.2f}x | {cpu:.0f} | {cpu / off_cpu:.2f}x")


def _cpu_us(result: h.Result) -> float:
    assert result.cpu is not None  # every HTTP point measures it
    return result.cpu.server / 100 / result.rate * 1e6


def measure(args: argparse.Namespace, work: Path, servers: list[h.Server]) -> dict[str, h.Point]:
    base = work / "base"
    h.build_repository(base, ["tiny"], max_batch_size=64)
    env = {**h._env(), "PYTHONPATH": str(h.ROOT / "src")}
    points: dict[str, h.Point] = {}
    chosen = {**SERVERS, **TOGETHER} if args.together else SERVERS
    for index, (name, (config_text, added, keyed)) in enumerate(chosen.items()):
        root = work / str(index)
        root.mkdir()
        repo = h.tiny_repository(base, root, added)
        config = None
        if config_text:
            config = root / "config.yaml"
            config.write_text(config_text)
        port, grpc_port = h.free_port(), h.free_port()
        url = f"http://127.0.0.1:{port}"
        server = h.start(
            f"features-{index}",
            h.inferd_command(h.ROOT / "src", repo, port, grpc_port, config),
            functools.partial(h.http_ok, f"{url}/ready"),
            env,
        )
        servers.append(server)
        headers = {"X-API-Key": h.KEY} if keyed else {}
        infer = f"{url}/v2/models/{h.TINY}/infer"
        if name == "cache (hits)":
            target = h.HttpTarget(infer, h.payloads("tiny").v2_json, h.JSON)
            points[name] = h.http_point(name, server, target, 64, root)
        else:
            points[name] = h.varying_point(name, server, infer, headers, root)
    for point in points.values():  # warm-up, not counted
        point.run(1.0)
    for round_ in range(1, args.rounds + 1):
        for point in points.values():
            point.results.append(point.run(args.duration))
        h.log(
            f"round {round_}: "
            + ", ".join(f"{n} {p.results[-1].rate:,.0f}/s" for n, p in points.items())
        )
    return points


if __name__ == "__main__":
    main()

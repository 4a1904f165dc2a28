"""Before and after: inferd at a commit against the working tree, on the tiny model.

A change that should not move the hot path (a refactoring, say) is checked with this: both
servers run at once, tiny V2 JSON at 64 and at 1 connection, measured in many interleaved
rounds (before, after, before, after ...), so a machine whose speed drifts moves both
alike. It prints each round's after/before ratio and their median; writes nothing.

    .venv/bin/python benchmarks/compare.py 2e23fbb            # 8 rounds of 4 s
    .venv/bin/python benchmarks/compare.py HEAD~3 --rounds 12
    .venv/bin/python benchmarks/compare.py HEAD~1 --features   # make bench's features-on server

``--features`` serves both with every optional feature on, as ``make bench``'s "features
on" point does (API key, rate limit, cache misses, a 90/10 split, the access log), and
loads them at 64 connections with another input in every request.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import statistics
import subprocess
import tempfile
from pathlib import Path

import hotpath as h


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commit", help="the 'before' commit (a git worktree of it is served)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per point")
    parser.add_argument(
        "--features", action="store_true", help="every optional feature on, varying inputs"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inferd-compare-") as folder:
        work = Path(folder)
        servers: list[h.Server] = []
        try:
            rates = measure(args, work, servers)
        finally:
            for server in servers:
                server.stop()
            subprocess.run(["git", "-C", str(h.ROOT), "worktree", "prune"], check=False)
    for connections in (64,) if args.features else (64, 1):
        after, before = rates[f"after c={connections}"], rates[f"before c={connections}"]
        ratios = [a.rate / b.rate for a, b in zip(after, before, strict=True)]
        print(
            f"tiny JSON c={connections}{', features on' if args.features else ''}: "
            "after/before per round "
            f"{[round(r, 2) for r in ratios]}, median {statistics.median(ratios):.2f}x "
            f"({statistics.median(r.rate for r in after):,.0f} vs "
            f"{statistics.median(r.rate for r in before):,.0f} req/s)"
        )
        # The server's CPU time per request: less moved than req/s by other processes
        # taking the machine's cores (a rate falls with them; a request's CPU, less).
        spent = [_cpu_us(b) / _cpu_us(a) for a, b in zip(after, before, strict=True)]
        print(
            f"  server CPU per request, before/after per round {[round(r, 2) for r in spent]}, "
            f"median {statistics.median(spent):.2f}x ({statistics.median(map(_cpu_us, after)):.0f}"
            f" vs {statistics.median(map(_cpu_us, before)):.0f} us)"
        )


def _cpu_us(result: h.Result) -> float:
    assert result.cpu is not None  # every HTTP point measures it
    return result.cpu.server / 100 / result.rate * 1e6


def measure(
    args: argparse.Namespace, work: Path, servers: list[h.Server]
) -> dict[str, list[h.Result]]:
    repo = work / "models"
    h.build_repository(repo, ["tiny"], max_batch_size=64)
    tiny = h.payloads("tiny")
    env = h._env()
    source = h.release_tree(work, args.commit) / "src"
    config = None
    if args.features:
        repo = h.features_repository(repo, work)
        config = work / "features.yaml"
        config.write_text(h.FEATURES_YAML.format(digest=hashlib.sha256(h.KEY.encode()).hexdigest()))
    paths = {
        "before": (source, f"{h.release_site()}:{source}"),
        "after": (h.ROOT / "src", str(h.ROOT / "src")),
    }
    points = []
    for name, (src, path) in paths.items():
        port, grpc_port = h.free_port(), h.free_port()
        url = f"http://127.0.0.1:{port}"
        server = h.start(
            name,
            h.inferd_command(src, repo, port, grpc_port, config),
            functools.partial(h.http_ok, f"{url}/ready"),
            {**env, "PYTHONPATH": path},
        )
        servers.append(server)
        if args.features:
            infer = f"{url}/v2/models/{h.TINY}/infer"
            points.append(
                h.varying_point(f"{name} c=64", server, infer, {"X-API-Key": h.KEY}, work)
            )
            continue
        target = h.HttpTarget(f"{url}/v2/models/{h.TINY}/infer", tiny.v2_json, h.JSON)
        for connections in (64, 1):
            points.append(
                h.http_point(f"{name} c={connections}", server, target, connections, work)
            )
    points.sort(key=lambda p: (p.label.split()[1], p.label))  # before, after per concurrency
    for point in points:  # warm-up, not counted
        point.run(1.0)
    for round_ in range(1, args.rounds + 1):
        for point in points:
            point.results.append(point.run(args.duration))
        h.log(
            f"round {round_}: "
            + ", ".join(f"{p.label} {p.results[-1].rate:,.0f}/s" for p in points)
        )
    return {p.label: p.results for p in points}


if __name__ == "__main__":
    main()

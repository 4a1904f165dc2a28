"""The start-up summary: once the repository has loaded, one log record with every model
version and its state, and where to reach the server (REST, its /docs, gRPC; TLS marked)."""

from __future__ import annotations

import logging

from inferd.core.node import Node
from inferd.ports import address

log = logging.getLogger("inferd")


def summary(node: Node, rest_url: str, grpc: tuple[str, int] | None, tls: bool) -> str:
    """The summary's text: a table of models, then the URLs."""
    rows = [
        (r["name"], r["version"] or "-", r["state"], r["reason"])
        for r in node.control.repository_index(full=True)
    ]
    header = ("model", "version", "state", "reason")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(3)]
    lines = [
        "  ".join(f"{cell:{widths[i]}}" if i < 3 else str(cell) for i, cell in enumerate(row))
        for row in [header, *rows]
    ]
    ready = sum(row[2] == "READY" for row in rows)
    lines = [
        f"serving {ready} of {len(rows)} model versions:",
        *("  " + ln.rstrip() for ln in lines),
    ]
    lines.append(f"  REST     {rest_url}  (OpenAPI: {rest_url}/docs)")
    if grpc is not None:
        lines.append(f"  gRPC     {address(*grpc)}{'  (TLS)' if tls else ''}")
    return "\n".join(lines)


async def log_summary(node: Node, rest_url: str, grpc: tuple[str, int] | None, tls: bool) -> None:
    """Log :func:`summary` once the repository has loaded."""
    await node.loaded.wait()
    log.info("%s", summary(node, rest_url, grpc, tls))

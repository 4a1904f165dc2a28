"""``--workers N``: readiness and Triton statistics for the whole process group.

The kernel hands each connection to one worker, so a worker must answer for all of them.
Every worker listens on a Unix socket in the group's shared folder (the metrics folder)
and, when connected to, writes a snapshot of itself (pid, readiness, statistics of every
serving version) as JSON and closes. The worker that takes a ``/ready`` or statistics
request reads its siblings' snapshots and merges them with its own. A sibling that does
not answer within :data:`SNAPSHOT_TIMEOUT_S` (a crashed worker's socket, one not started
yet) counts as not ready and adds no statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson

log = logging.getLogger("inferd.group")

SNAPSHOT_TIMEOUT_S: Final = 1.0
SOCKET_GLOB: Final = "worker-*.sock"

Snapshot = dict[str, Any]


def _add(total: dict[str, Any], part: dict[str, Any]) -> None:
    """Sum ``part`` into ``total`` (nested counts and durations); the latest timestamp."""
    for key, value in part.items():
        if key == "last_inference":
            total[key] = max(total.get(key, 0), value)
        elif isinstance(value, dict):
            _add(total.setdefault(key, {}), value)
        elif isinstance(value, int) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        else:
            total.setdefault(key, value)


def merge_stats(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Triton ``model_stats`` lists of several workers as one: summed per model version
    (batch statistics per batch size)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    batches: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for stats in parts:
        for entry in stats:
            key = (entry["name"], entry["version"])
            total = merged.setdefault(key, {"name": key[0], "version": key[1]})
            _add(total, {k: v for k, v in entry.items() if k != "batch_stats"})
            sizes = batches.setdefault(key, {})
            for batch in entry.get("batch_stats", []):
                _add(sizes.setdefault(batch["batch_size"], {}), batch)
    for key, total in merged.items():
        total["batch_stats"] = [
            {**stat, "batch_size": size} for size, stat in sorted(batches[key].items())
        ]
    return list(merged.values())


class ProcessGroup:
    """One worker's view of the group; ``snapshot`` gives this worker's own state. Without
    a folder the group is this process alone (one worker)."""

    def __init__(
        self, folder: Path | None, expected: int, snapshot: Callable[[], Snapshot]
    ) -> None:
        self.folder = folder
        self.expected = expected
        self._snapshot = snapshot
        self.path = folder / f"worker-{os.getpid()}.sock" if folder else None
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if self.path is not None:
            self._server = await asyncio.start_unix_server(self._answer, path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(orjson.dumps(self._snapshot()))
            await writer.drain()
        except Exception:
            log.exception("worker snapshot failed")
        finally:
            writer.close()

    async def _read(self, path: Path) -> Snapshot | None:
        try:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    data = await reader.read()
                finally:
                    writer.close()
            snapshot: Snapshot = orjson.loads(data)
            return snapshot
        except (OSError, TimeoutError, orjson.JSONDecodeError):
            return None  # a worker that died or has not started answering

    async def snapshots(self) -> list[Snapshot]:
        """Every worker's snapshot that could be read, this one's first."""
        if self.folder is None:
            return [self._snapshot()]
        others = [p for p in sorted(self.folder.glob(SOCKET_GLOB)) if p != self.path]
        read = await asyncio.gather(*(self._read(p) for p in others))
        return [self._snapshot(), *(s for s in read if s is not None)]

    async def ready(self) -> tuple[bool, list[dict[str, Any]]]:
        """Whether all ``expected`` workers answer and are ready, and each one's state."""
        workers = [{"pid": s["pid"], "ready": s["ready"]} for s in await self.snapshots()]
        return len(workers) >= self.expected and all(w["ready"] for w in workers), workers

    async def stats(self, local: dict[str, Any]) -> dict[str, Any]:
        """``local`` (this worker's Triton statistics for the versions asked about) summed
        over the group."""
        if self.folder is None:
            return local
        wanted = {(e["name"], e["version"]) for e in local["model_stats"]}
        merged = merge_stats([s["stats"] for s in await self.snapshots()])
        return {"model_stats": [e for e in merged if (e["name"], e["version"]) in wanted]}

"""JSON bodies parsed where they cannot hold the event loop.

Parsing makes a Python object of every number, and the parser holds the GIL until it is
done: 16 MB of JSON is a few hundred milliseconds during which nothing else in the
process runs, and no thread can change that. So bodies of ``safeguards.json_offload_bytes``
or more (REST bodies, WebSocket messages) are parsed in a worker process, which also reads
every tensor's data into numpy (``jsondata.read``): what comes back is the small rest of
the document and one array per tensor. Smaller bodies are parsed on the loop, where that
costs less than the trip to the worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final

from inferd.errors import Unavailable
from inferd.http.codec import parse_json
from inferd.jsondata import read


def read_tensor_data(doc: Any) -> Any:
    """``doc`` with its tensor data lists read: each V2 input's ``data``, and the simple
    API's ``inputs`` or ``batch``. Anything else is left for the decoders to judge."""
    if not isinstance(doc, dict):
        return doc
    inputs = doc.get("inputs")
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict):
        for item in inputs:
            if isinstance(item, dict) and isinstance(item.get("data"), list):
                item["data"] = read(item["data"])
    elif isinstance(inputs, list) and inputs:
        doc["inputs"] = read(inputs)
    batch = doc.get("batch")
    if isinstance(batch, list) and batch:
        doc["batch"] = read(batch)
    return doc


#: How much the worker's scheduling priority is lowered (``nice``): on a crowded machine the
#: server's event loop gets the CPU before a parse that takes a second anyway.
WORKER_NICENESS: Final = 10


def _lower_priority() -> None:
    """In the worker, as it starts."""
    os.nice(WORKER_NICENESS)


def parse_and_read(raw: bytes) -> Any:
    """In the worker: parse, then read the tensor data (InvalidArgument comes back as is)."""
    return read_tensor_data(parse_json(raw))


class JsonParser:
    """Parses request bodies; the large ones in a worker process started at first need."""

    def __init__(self, offload_bytes: int, workers: int = 1) -> None:
        self._offload_bytes = offload_bytes
        self._workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def offloads(self, raw: bytes | memoryview | str) -> bool:
        """Whether ``raw`` is parsed in the worker (:meth:`parse`); a smaller body is parsed
        on the loop, by :func:`parse_json` directly on the hot routes (no coroutine)."""
        return bool(self._offload_bytes) and len(raw) >= self._offload_bytes

    async def parse(self, raw: bytes | memoryview | str) -> Any:
        if not self.offloads(raw):
            return parse_json(raw)
        if self._pool is None:
            # spawn: the server's threads (model instances, gRPC) are not forked along.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority,
            )
        payload = raw.encode() if isinstance(raw, str) else bytes(raw)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, parse_and_read, payload)
        except BrokenProcessPool:
            self.close()  # the worker died (killed, out of memory): the next body starts one
            raise Unavailable("the JSON parsing worker stopped; retry", retry_after_s=1.0) from None

    def close(self) -> None:
        """Stop the worker (pending parses are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

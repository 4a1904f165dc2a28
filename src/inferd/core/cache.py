"""The prediction cache: answers keyed by content, shared by replicas through Redis.

A key is the SHA-256 of the model name, the digest of the version that answers (every file
of its version folder, model.yaml's ``parameters`` and the settings that reach its outputs:
see :func:`version_digest`; computed once at load, so new weights, data files or
parameters under an old version name or label never meet old answers), the requested outputs with their parameters, and each input's
name, datatype, shape and raw bytes. The service looks it up after the version is chosen
and before the batcher. Identical requests in flight at once are computed once: later
ones wait for the first (single flight) and count as hits.

Shared values are the output tensors as raw bytes behind a small header, never pickle
(``core/cache_entry.py``). Without a shared store each model has an in-process LRU bounded
by its ``cache.max_bytes``, which keeps each answer's arrays themselves (read-only copies,
counted at the memory they take), so a hit decodes nothing; with
``storage.redis_uri`` every replica and worker shares Redis, each entry living
``cache.ttl_s``. When the shared store does not answer, the request is
computed as if the model had no cache and counted as ``bypassed``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from inferd.core.cache_entry import Kept, decode, encode, kept
from inferd.core.messages import InferRequest
from inferd.core.serving.stats import VersionStats
from inferd.core.storage import MemoryStore, StorageUnavailable, Store
from inferd.core.store.model_config import ModelConfig
from inferd.core.store.repository import UNWATCHED
from inferd.metrics import Metrics
from inferd.tensors import to_binary
from inferd.types import Tensor, TensorSpec

log = logging.getLogger("inferd.cache")

KEY_PREFIX: Final = "inferd:cache:"

Compute = Callable[[], Awaitable[list[Tensor]]]


class Cached(Protocol):
    """What the cache reads of the version that answers: the store's ``LoadedVersion``,
    whose ``digest`` the loader computes with :func:`version_digest` (the store imports
    this module, not the other way round)."""

    @property
    def model(self) -> str: ...

    @property
    def digest(self) -> str: ...

    @property
    def inputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def outputs(self) -> tuple[TensorSpec, ...]: ...

    @property
    def config(self) -> ModelConfig: ...

    @property
    def stats(self) -> VersionStats: ...


def folder_digest(path: Path) -> str:
    """SHA-256 of everything a version may read: a file's bytes, or every file under a
    folder (relative paths and contents, in sorted order; dot files and Python's bytecode
    cache left out, as the repository poller leaves them out)."""
    digest = hashlib.sha256()
    if path.is_dir():
        files = []
        for parent, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d not in UNWATCHED]
            files += [Path(parent, n) for n in names if not n.startswith(".")]
        files.sort()
    else:
        files = [path]
    for file in files:
        if path.is_dir():
            name = file.relative_to(path).as_posix().encode()
            digest.update(len(name).to_bytes(4, "little") + name)
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def version_digest(
    files: str,
    runtime: str,
    config: ModelConfig,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
) -> str:
    """The digest of everything that can change a version's answers: its files'
    :func:`folder_digest`, the runtime, model.yaml's ``parameters`` and the settings that
    reach the outputs (signature, device, precision, non-finite policies, the inputs and
    outputs served). Computed once, at load."""
    material = {
        "files": files,
        "runtime": runtime,
        "parameters": config.parameters,
        "signature": config.signature,
        "device": config.device,
        "precision": config.precision,
        "allow_nonfinite": config.allow_nonfinite,
        "nonfinite_outputs": config.nonfinite_outputs,
        "inputs": [(s.name, s.datatype, list(s.shape)) for s in inputs],
        "outputs": [(s.name, s.datatype, list(s.shape)) for s in outputs],
    }
    text = json.dumps(material, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=1024)
def _tensor_header(
    name: str, datatype: str, shape: tuple[int, ...], dtype: np.dtype[Any] | None
) -> bytes:
    """What a key holds of a tensor before its bytes: its name, datatype and shape (with
    their length), then the array's dtype (none for BYTES and BF16, hashed as on the wire)."""
    header = f"{name}\0{datatype}\0{list(shape)}\0".encode()
    return (
        len(header).to_bytes(4, "little") + header + (b"" if dtype is None else dtype.str.encode())
    )


def _hash_tensor(digest: Any, name: str, datatype: str, array: np.ndarray[Any, Any]) -> None:
    if datatype in ("BYTES", "BF16"):
        digest.update(_tensor_header(name, datatype, array.shape, None))
        digest.update(to_binary(datatype, array))
        return
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    digest.update(_tensor_header(name, datatype, array.shape, array.dtype))
    digest.update(array)  # its bytes: the buffer of a C-contiguous array


def _name(spec: TensorSpec) -> str:
    return spec.name


def _key_head(loaded: Cached) -> str:
    """What every key of ``loaded``'s answers starts with (its model and digest), in text:
    a version's entries are found, and dropped, by it."""
    return f"{KEY_PREFIX}{loaded.model}:{loaded.digest[:16]}:"


@functools.lru_cache(maxsize=1024)
def _prefix(model: str, digest: str, outputs: tuple[str, ...]) -> Any:
    """The hash of what a key starts with: the model, its version's digest and the requested
    outputs (each with its parameters added by :meth:`VersionCache.key` when it has any)."""
    prefix = hashlib.sha256(f"{model}\0{digest}\0".encode())
    for name in outputs:
        prefix.update(f"{name}\0".encode())
    return prefix


class ResponseCache:
    """The process's prediction cache: its stores and the requests in flight. Requests
    go through a version's :class:`VersionCache` (:meth:`bound`, held by its serving
    plan), which looks answers up, computes what is missing once, and stores it.

    ``shared``: the store every replica uses (Redis); None keeps one in-process LRU per
    model, bounded by that model's ``cache.max_bytes``.
    """

    def __init__(self, shared: Store | None, metrics: Metrics) -> None:
        self._shared = shared
        self.metrics = metrics
        self._memory: dict[str, MemoryStore] = {}
        #: Requests being computed; a future once an identical request waits for one.
        self.flights: dict[str, asyncio.Future[list[Tensor]] | None] = {}

    @property
    def shared(self) -> bool:
        return self._shared is not None

    def bound(self, loaded: Cached) -> VersionCache:
        """The cache as ``loaded``'s requests use it (made with its plan, not per request)."""
        if self._shared is not None:
            return VersionCache(self, loaded, self._shared)
        store = self._memory.get(loaded.model)
        if store is None:
            store = self._memory[loaded.model] = MemoryStore(loaded.config.cache.max_bytes)
        return VersionCache(self, loaded, store)

    def forget(self, loaded: Cached) -> None:
        """Drop what this process holds for a version that stops serving (unload, swap).
        Shared entries stay: other replicas may serve the same artifact, and entries of
        other weights are never read (their key holds their digest); they expire."""
        store = self._memory.get(loaded.model)
        if store is not None:
            store.drop_prefix(_key_head(loaded))
            self.metrics.cache_held(loaded.model, store.bytes, 0)

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()
        for store in self._memory.values():
            await store.close()


class VersionCache:
    """The prediction cache as one version's requests use it: its store, what its keys
    start with and its counters, resolved when its plan is made."""

    def __init__(self, cache: ResponseCache, loaded: Cached, store: Store) -> None:
        self.loaded = loaded
        self.store = store
        self._flights = cache.flights
        self._metrics = cache.metrics
        self._memory = store if type(store) is MemoryStore else None
        self._ttl_s = loaded.config.cache.ttl_s
        self._head = _key_head(loaded)
        self._specs = sorted(loaded.inputs, key=_name)
        #: The prefix of a request that names no outputs: it gets all of them.
        self._every = _prefix(loaded.model, loaded.digest, tuple(s.name for s in loaded.outputs))
        self._hits = self._metrics.cache_count(loaded.model, "hit")
        self._misses = self._metrics.cache_count(loaded.model, "miss")

    def key(
        self,
        arrays: Mapping[str, np.ndarray[Any, Any]],
        request: InferRequest,
        outputs: Sequence[str],
    ) -> str:
        """The content key of a request's decoded inputs ``arrays`` (see the module
        docstring). JSON and binary requests of the same tensors share it."""
        if request.outputs:
            loaded = self.loaded
            digest = _prefix(loaded.model, loaded.digest, tuple(outputs)).copy()
            parameters = {o.name: o.parameters for o in request.outputs}
            for name in outputs:
                if parameters.get(name):
                    digest.update(f"{name}\0{sorted(parameters[name].items())!r}\0".encode())
        else:
            digest = self._every.copy()
        for spec in self._specs:
            _hash_tensor(digest, spec.name, spec.datatype, arrays[spec.name])
        hexdigest: str = digest.hexdigest()
        return self._head + hexdigest

    async def through(
        self,
        arrays: Mapping[str, np.ndarray[Any, Any]],
        request: InferRequest,
        outputs: Sequence[str],
        compute: Compute,
    ) -> tuple[list[Tensor], bool]:
        """The outputs for ``request`` (inputs decoded as ``arrays``) and whether they came
        without computing (a hit).

        One coroutine for the in-process store, which answers without a wait; a request in
        flight gets a future only when an identical one comes to wait for it."""
        start = time.perf_counter()
        key = self.key(arrays, request, outputs)
        while key in self._flights:
            flight = self._flights[key]
            if flight is None:
                flight = self._flights[key] = asyncio.get_running_loop().create_future()
            try:
                tensors = await asyncio.shield(flight)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                continue  # the first caller went away: compute it ourselves
            self._hit(start)
            return tensors, True
        self._flights[key] = None
        try:
            if (memory := self._memory) is not None:
                held: Kept | None = memory.lookup(key)
                if held is not None:  # new tensors: a response's may take parameters
                    tensors, hit = [Tensor(n, d, a) for n, d, a in held], True
                    self._hit(start)
                else:
                    lookup_s = time.perf_counter() - start
                    tensors, hit = await compute(), False
                    insert_start = time.perf_counter()
                    evicted = memory.evictions
                    memory.put(key, *kept(tensors), self._ttl_s)
                    self._metrics.cache_held(
                        self.loaded.model, memory.bytes, memory.evictions - evicted
                    )
                    self._missed(lookup_s, insert_start)
            else:
                tensors, hit = await self._shared_through(key, start, compute)
        except asyncio.CancelledError:
            if (flight := self._flights.pop(key)) is not None:
                flight.cancel()
            raise
        except BaseException as exc:
            if (flight := self._flights.pop(key)) is not None:
                flight.set_exception(exc)
                flight.exception()  # retrieved: only waiters re-raise it
            raise
        if (flight := self._flights.pop(key)) is not None:
            flight.set_result(tensors)
        return tensors, hit

    async def _shared_through(
        self, key: str, start: float, compute: Compute
    ) -> tuple[list[Tensor], bool]:
        """:meth:`through` with the shared store, whose every call waits on the network."""
        try:
            value = await self.store.get(key)
        except StorageUnavailable as exc:
            log.debug("prediction cache bypassed: %s", exc)
            self._metrics.cache_count(self.loaded.model, "bypassed").add()
            return await compute(), False
        if value is not None and (tensors := self._decoded(value, start)) is not None:
            return tensors, True
        lookup_s = time.perf_counter() - start
        tensors = await compute()
        insert_start = time.perf_counter()
        try:
            await self.store.set(key, encode(tensors), self._ttl_s)
        except StorageUnavailable as exc:
            log.debug("prediction cache: answer not stored: %s", exc)
        self._missed(lookup_s, insert_start)
        return tensors, False

    def _decoded(self, value: bytes, start: float) -> list[Tensor] | None:
        """A stored entry's tensors, counted as a hit; None (a miss) when unreadable."""
        try:
            tensors = decode(value)
        except ValueError:
            log.warning("prediction cache: entry for model '%s' unreadable", self.loaded.model)
            return None
        self._hit(start)
        return tensors

    def _missed(self, lookup_s: float, insert_start: float) -> None:
        self.loaded.stats.cache_miss.add(lookup_s + time.perf_counter() - insert_start)
        self._misses.add()

    def _hit(self, start: float) -> None:
        self.loaded.stats.cache_hit.add(time.perf_counter() - start)
        self._hits.add()

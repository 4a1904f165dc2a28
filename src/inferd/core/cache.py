"""The prediction cache: answers keyed by content, shared by replicas through Redis.

A key is the SHA-256 of the model name, the digest of the version that answers (every file
of its version folder, model.yaml's ``parameters`` and the settings that reach its outputs:
see :func:`version_digest`; computed once at load, so new weights, data files or
parameters under an old version name or label never meet old answers), the requested outputs with their parameters, and each input's
name, datatype, shape and raw bytes. The service looks it up after the version is chosen
and before the batcher. Identical requests in flight at once are computed once: later
ones wait for the first (single flight) and count as hits.

Shared values are the output tensors as raw bytes behind a small header (:func:`encode`),
never pickle. Without a shared store each model has an in-process LRU bounded by its
``cache.max_bytes``, which keeps each answer's arrays themselves (read-only copies,
counted at their encoded size: :func:`kept`), so a hit decodes nothing; with
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
import struct
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from inferd.core.messages import InferRequest
from inferd.core.serving.stats import VersionStats
from inferd.core.storage import MemoryStore, StorageUnavailable, Store
from inferd.core.store.model_config import ModelConfig
from inferd.core.store.repository import UNWATCHED
from inferd.metrics import Metrics
from inferd.tensors import from_binary, to_binary
from inferd.types import Tensor, TensorSpec

log = logging.getLogger("inferd.cache")

MAGIC: Final = b"IFDC\x01"
_COUNT: Final = struct.Struct("<H")
_TENSOR: Final = struct.Struct("<HBBQ")  # name length, datatype length, dims, data length
_DIM: Final = struct.Struct("<q")
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


@functools.lru_cache(maxsize=1024)
def _prefix(model: str, digest: str, outputs: tuple[str, ...]) -> Any:
    """The hash of what a key starts with: the model, its version's digest and the requested
    outputs (each with its parameters added by :func:`cache_key` when it has any)."""
    prefix = hashlib.sha256(f"{model}\0{digest}\0".encode())
    for name in outputs:
        prefix.update(f"{name}\0".encode())
    return prefix


def cache_key(
    loaded: Cached,
    arrays: Mapping[str, np.ndarray[Any, Any]],
    request: InferRequest,
    outputs: Sequence[str],
) -> str:
    """The content key of a request's decoded inputs ``arrays`` answered by ``loaded``
    (see the module docstring). JSON and binary requests of the same tensors share it."""
    digest = _prefix(loaded.model, loaded.digest, tuple(outputs)).copy()
    if request.outputs:
        parameters = {o.name: o.parameters for o in request.outputs}
        for name in outputs:
            if parameters.get(name):
                digest.update(f"{name}\0{sorted(parameters[name].items())!r}\0".encode())
    specs = loaded.inputs if len(loaded.inputs) == 1 else sorted(loaded.inputs, key=_name)
    for spec in specs:
        _hash_tensor(digest, spec.name, spec.datatype, arrays[spec.name])
    return f"{KEY_PREFIX}{loaded.model}:{loaded.digest[:16]}:{digest.hexdigest()}"


def encode(tensors: Sequence[Tensor]) -> bytes:
    """Output tensors as bytes: a magic, a count, then per tensor its name, datatype,
    shape and raw little-endian data (BYTES: 4-byte lengths, as on the wire)."""
    parts = [MAGIC, _COUNT.pack(len(tensors))]
    for tensor in tensors:
        data = to_binary(tensor.datatype, tensor.data)
        parts += (_entry_header(tensor.name, tensor.datatype, tensor.data.shape, len(data)), data)
    return b"".join(parts)


@functools.lru_cache(maxsize=1024)
def _entry_header(name: str, datatype: str, shape: tuple[int, ...], size: int) -> bytes:
    """What :func:`encode` writes before a tensor's data."""
    name_bytes, type_bytes = name.encode(), datatype.encode()
    head = _TENSOR.pack(len(name_bytes), len(type_bytes), len(shape), size)
    return b"".join((head, name_bytes, type_bytes, *(_DIM.pack(dim) for dim in shape)))


#: What the in-process store keeps of an answer: each output's name, datatype and array.
Kept = tuple[tuple[str, str, np.ndarray[Any, Any]], ...]


def kept(tensors: Sequence[Tensor]) -> tuple[Kept, int]:
    """An answer as the in-process store keeps it (read-only copies of the arrays, which
    may be views of a whole batch's output), and the bytes :func:`encode` would make of it."""
    held = []
    size = len(MAGIC) + _COUNT.size
    for tensor in tensors:
        data = tensor.data.copy()
        data.flags.writeable = False
        held.append((tensor.name, tensor.datatype, data))
        body = len(to_binary("BYTES", data)) if tensor.datatype == "BYTES" else data.nbytes
        size += len(_entry_header(tensor.name, tensor.datatype, data.shape, 0)) + body
    return tuple(held), size


def decode(value: bytes) -> list[Tensor]:
    """The tensors :func:`encode` wrote; ValueError for anything else."""
    if not value.startswith(MAGIC):
        raise ValueError("not a cache entry")
    view = memoryview(value)
    offset = len(MAGIC)
    (count,) = _COUNT.unpack_from(view, offset)
    offset += _COUNT.size
    tensors = []
    for _ in range(count):
        name_len, type_len, ndim, data_len = _TENSOR.unpack_from(view, offset)
        offset += _TENSOR.size
        name = bytes(view[offset : offset + name_len]).decode()
        offset += name_len
        datatype = bytes(view[offset : offset + type_len]).decode()
        offset += type_len
        shape = tuple(_DIM.unpack_from(view, offset + i * _DIM.size)[0] for i in range(ndim))
        offset += ndim * _DIM.size
        data = bytes(view[offset : offset + data_len])
        offset += data_len
        tensors.append(Tensor(name, datatype, from_binary(name, datatype, shape, data)))
    if offset != len(value):
        raise ValueError("cache entry has trailing bytes")
    return tensors


class ResponseCache:
    """Looks answers up, computes what is missing once, and stores it.

    ``shared``: the store every replica uses (Redis); None keeps one in-process LRU per
    model, bounded by that model's ``cache.max_bytes``.
    """

    def __init__(self, shared: Store | None, metrics: Metrics) -> None:
        self._shared = shared
        self._metrics = metrics
        self._memory: dict[str, MemoryStore] = {}
        #: Requests being computed; a future once an identical request waits for one.
        self._flights: dict[str, asyncio.Future[list[Tensor]] | None] = {}

    @property
    def shared(self) -> bool:
        return self._shared is not None

    def _store(self, loaded: Cached) -> Store:
        if self._shared is not None:
            return self._shared
        store = self._memory.get(loaded.model)
        if store is None:
            store = self._memory[loaded.model] = MemoryStore(loaded.config.cache.max_bytes)
        return store

    async def through(
        self,
        loaded: Cached,
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
        key = cache_key(loaded, arrays, request, outputs)
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
            self._hit(loaded, start)
            return tensors, True
        store = self._store(loaded)
        self._flights[key] = None
        try:
            if type(store) is MemoryStore:
                held: Kept | None = store.lookup(key)
                if held is not None:  # new tensors: a response's may take parameters
                    tensors, hit = [Tensor(n, d, a) for n, d, a in held], True
                    self._hit(loaded, start)
                else:
                    lookup_s = time.perf_counter() - start
                    tensors, hit = await compute(), False
                    insert_start = time.perf_counter()
                    evicted = store.evictions
                    store.put(key, *kept(tensors), loaded.config.cache.ttl_s)
                    self._metrics.cache_held(loaded.model, store.bytes, store.evictions - evicted)
                    self._missed(loaded, lookup_s, insert_start)
            else:
                tensors, hit = await self._shared_through(loaded, store, key, start, compute)
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
        self, loaded: Cached, store: Store, key: str, start: float, compute: Compute
    ) -> tuple[list[Tensor], bool]:
        """:meth:`through` with the shared store, whose every call waits on the network."""
        try:
            value = await store.get(key)
        except StorageUnavailable as exc:
            log.debug("prediction cache bypassed: %s", exc)
            self._metrics.cache_lookup(loaded.model, "bypassed")
            return await compute(), False
        if value is not None and (tensors := self._decoded(loaded, value, start)) is not None:
            return tensors, True
        lookup_s = time.perf_counter() - start
        tensors = await compute()
        insert_start = time.perf_counter()
        try:
            await store.set(key, encode(tensors), loaded.config.cache.ttl_s)
        except StorageUnavailable as exc:
            log.debug("prediction cache: answer not stored: %s", exc)
        self._missed(loaded, lookup_s, insert_start)
        return tensors, False

    def _decoded(self, loaded: Cached, value: bytes, start: float) -> list[Tensor] | None:
        """A stored entry's tensors, counted as a hit; None (a miss) when unreadable."""
        try:
            tensors = decode(value)
        except ValueError:
            log.warning("prediction cache: entry for model '%s' unreadable", loaded.model)
            return None
        self._hit(loaded, start)
        return tensors

    def _missed(self, loaded: Cached, lookup_s: float, insert_start: float) -> None:
        loaded.stats.cache_miss.add(lookup_s + time.perf_counter() - insert_start)
        self._metrics.cache_lookup(loaded.model, "miss")

    def _hit(self, loaded: Cached, start: float) -> None:
        loaded.stats.cache_hit.add(time.perf_counter() - start)
        self._metrics.cache_lookup(loaded.model, "hit")

    def forget(self, loaded: Cached) -> None:
        """Drop what this process holds for a version that stops serving (unload, swap).
        Shared entries stay: other replicas may serve the same artifact, and entries of
        other weights are never read (their key holds their digest); they expire."""
        store = self._memory.get(loaded.model)
        if store is not None:
            store.drop_prefix(f"{KEY_PREFIX}{loaded.model}:{loaded.digest[:16]}:")
            self._metrics.cache_held(loaded.model, store.bytes, 0)

    async def close(self) -> None:
        if self._shared is not None:
            await self._shared.close()
        for store in self._memory.values():
            await store.close()

"""Triton's system shared memory extension: inputs read from, outputs written to, POSIX
shared memory regions that clients on the server's host register.

Limits a shared server needs:

- A region belongs to the caller that registered it (its API key's name; callers without
  a key share one anonymous owner). Another caller can neither use, list nor unregister
  it: to them it does not exist (each owner names its regions in its own namespace).
- A region is a POSIX shared memory object (``shm_open``'s name, ``/name``): a file directly
  under /dev/shm, opened without following links. No other path can be named.
- Offsets and sizes are checked against the region, the region against the object.
- At most ``shared_memory.max_regions`` regions and ``max_total_bytes`` bytes at once; a
  region is unmapped when it is unregistered and when the server stops.
- ``shared_memory.mode``: ``off``, ``local`` (callers on loopback addresses only; the
  default) or ``any``. Refused under ``--workers N`` (each worker would hold its own).

A request's inputs that name a region are read when the adapter resolves the request
(one copy out of the region: an unregister never pulls memory from under a running
model); outputs that name one are written after the answer, which then carries the
region's name and the bytes written instead of the data.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import mmap
import os
import re
import stat
from pathlib import Path
from typing import Any, Final

from inferd.core.messages import InferRequest, InferResponse
from inferd.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, clip
from inferd.settings import SharedMemorySettings
from inferd.tensors import WireTensor, binary_tensor, to_binary

#: Where Linux keeps POSIX shared memory objects.
SHM_ROOT: Final = Path("/dev/shm")
#: A POSIX shared memory name: one path component (a leading "/" is optional).
KEY: Final = re.compile(r"^/?[A-Za-z0-9_.\-]{1,250}$")
REGION: Final = "shared_memory_region"
BYTE_SIZE: Final = "shared_memory_byte_size"
OFFSET: Final = "shared_memory_offset"
PARAMETERS: Final = frozenset({REGION, BYTE_SIZE, OFFSET})
#: A caller: its key's name (None: no key) and its address.
Caller = tuple[str | None, str | None]


@dataclasses.dataclass(slots=True)
class SharedInput(WireTensor):
    """An input whose data is in a region: its elements come once the request is resolved."""

    region: str = ""
    offset: int = 0
    byte_size: int = 0


def _unresolved() -> Any:
    raise InvalidArgument(
        "inputs in shared memory are read by the infer routes (REST /infer, gRPC ModelInfer "
        "and ModelStreamInfer) only"
    )


def _integer(parameters: dict[str, Any], key: str, what: str, default: int | None) -> int:
    value = parameters.get(key, default)
    if type(value) is not int or value < 0:
        raise InvalidArgument(f"{what}: {key} must be a non-negative integer, got {value!r}")
    return value


def shared_input(
    name: str, datatype: str, shape: tuple[int, ...], parameters: dict[str, Any]
) -> SharedInput:
    """An input that names a region (its parameters hold ``shared_memory_region``)."""
    what = f"input '{clip(name)}'"
    unknown = parameters.keys() - PARAMETERS - {"binary_data_size"}
    region = parameters.get(REGION)
    if not isinstance(region, str) or not region:
        raise InvalidArgument(f"{what}: {REGION} must be a region's name")
    if "binary_data_size" in parameters or unknown:
        raise InvalidArgument(f"{what}: an input in shared memory takes {sorted(PARAMETERS)} only")
    return SharedInput(
        name,
        datatype,
        shape,
        _unresolved,
        parameters=parameters,
        region=region,
        offset=_integer(parameters, OFFSET, what, 0),
        byte_size=_integer(parameters, BYTE_SIZE, what, None),
    )


def wants_shared_output(parameters: dict[str, Any]) -> bool:
    return REGION in parameters


@dataclasses.dataclass(slots=True)
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    memory: mmap.mmap

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "offset": self.offset,
            "byte_size": self.byte_size,
        }

    def span(self, offset: int, size: int, what: str) -> int:
        """Where ``size`` bytes at ``offset`` of the region start in the mapping."""
        if offset + size > self.byte_size:
            raise InvalidArgument(
                f"{what}: {size} bytes at offset {offset} run past region '{self.name}' "
                f"({self.byte_size} bytes)"
            )
        return self.offset + offset

    def close(self) -> None:
        self.memory.close()


class SharedMemory:
    """The registered regions of every caller."""

    def __init__(
        self, settings: SharedMemorySettings, root: Path = SHM_ROOT, workers: int = 1
    ) -> None:
        self.settings = settings
        self._workers = workers
        self._root = root
        self._regions: dict[tuple[str | None, str], Region] = {}
        self._bytes = 0

    def admit(self, caller: Caller) -> str | None:
        """The owner a caller's regions belong to; refused when the extension is off for it."""
        mode = self.settings.mode
        if mode == "off":
            raise PermissionDenied("system shared memory is off (shared_memory.mode: off)")
        if self._workers > 1:
            raise PermissionDenied(
                f"this server runs {self._workers} worker processes (server.workers), each "
                "with its own regions; system shared memory needs one process"
            )
        if mode == "local" and not _loopback(caller[1]):
            raise PermissionDenied(
                "system shared memory is for clients on the server's host "
                "(shared_memory.mode: local); send the data in the request instead"
            )
        return caller[0]

    # -- the extension's three calls ---------------------------------------------------------

    def register(self, caller: Caller, name: str, key: str, offset: int, byte_size: int) -> None:
        owner = self.admit(caller)
        if not name or len(name) > 256:
            raise InvalidArgument("a region needs a name of 1 to 256 characters")
        if (owner, name) in self._regions:
            raise InvalidArgument(f"shared memory region '{clip(name)}' is already registered")
        if not KEY.match(key) or key.strip("/") in (".", ".."):
            raise InvalidArgument(
                f"key {clip(repr(key))} is not a POSIX shared memory name ('/name': letters, "
                "digits, '_', '-', '.')"
            )
        if byte_size <= 0:
            raise InvalidArgument("byte_size must be positive")
        if len(self._regions) >= self.settings.max_regions:
            raise ResourceExhausted(
                f"{self.settings.max_regions} shared memory regions are registered already "
                "(shared_memory.max_regions); unregister one first"
            )
        if self._bytes + byte_size > self.settings.max_total_bytes:
            raise ResourceExhausted(
                f"registering {byte_size} bytes would pass the {self.settings.max_total_bytes} "
                "bytes of shared memory the server maps (shared_memory.max_total_bytes)"
            )
        memory = self._map(key, offset, byte_size)
        self._regions[owner, name] = Region(name, key, offset, byte_size, memory)
        self._bytes += byte_size

    def _map(self, key: str, offset: int, byte_size: int) -> mmap.mmap:
        """The object mapped from its start to the region's end (the mapping keeps its own
        descriptor; the one opened here is closed)."""
        path = self._root / key.lstrip("/")
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise InvalidArgument(
                f"shared memory object {clip(repr(key))} cannot be opened ({exc.strerror})"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidArgument(f"{clip(repr(key))} is not a shared memory object")
            if offset + byte_size > info.st_size:
                raise InvalidArgument(
                    f"offset {offset} + byte_size {byte_size} run past shared memory object "
                    f"{clip(repr(key))} ({info.st_size} bytes)"
                )
            return mmap.mmap(fd, offset + byte_size)
        finally:
            os.close(fd)

    def unregister(self, caller: Caller, name: str | None) -> None:
        """Unregister and unmap one region (a name the caller has not registered: nothing
        to do), or every region of the caller (``name`` None)."""
        owner = self.admit(caller)
        names = [n for o, n in self._regions if o == owner] if name is None else [name]
        for each in names:
            region = self._regions.pop((owner, each), None)
            if region is not None:
                self._bytes -= region.byte_size
                region.close()

    def status(self, caller: Caller, name: str | None) -> list[dict[str, Any]]:
        owner = self.admit(caller)
        if name is None:
            return [r.status() for (o, _), r in self._regions.items() if o == owner]
        return [self._region(owner, name).status()]

    def _region(self, owner: str | None, name: str) -> Region:
        region = self._regions.get((owner, name))
        if region is None:
            raise NotFound(f"no shared memory region '{clip(name)}' is registered")
        return region

    # -- inference ------------------------------------------------------------------------

    def resolve(self, caller: Caller, request: InferRequest) -> None:
        """Read the request's inputs that are in shared memory (one copy each)."""
        owner = self.admit(caller)
        for index, tensor in enumerate(request.inputs):
            if isinstance(tensor, SharedInput):
                region = self._region(owner, tensor.region)
                what = f"input '{tensor.name}'"
                start = region.span(tensor.offset, tensor.byte_size, what)
                data = region.memory[start : start + tensor.byte_size]
                decoded = binary_tensor(tensor.name, tensor.datatype, tensor.shape, data)
                decoded.parameters = tensor.parameters
                request.inputs[index] = decoded
        for output in request.outputs or ():
            if REGION in output.parameters:
                self._check_output(owner, output.name, output.parameters)

    def _check_output(self, owner: str | None, name: str, parameters: dict[str, Any]) -> None:
        what = f"output '{clip(name)}'"
        unknown = parameters.keys() - PARAMETERS - {"binary_data", "classification"}
        if unknown or parameters.get("binary_data") is True:
            raise InvalidArgument(f"{what}: an output in shared memory takes {sorted(PARAMETERS)}")
        region = self._region(owner, str(parameters[REGION]))
        size = _integer(parameters, BYTE_SIZE, what, None)
        region.span(_integer(parameters, OFFSET, what, 0), size, what)

    def write_outputs(self, caller: Caller, response: InferResponse) -> None:
        """Write the outputs that name a region into it; each then carries the region's
        name and the bytes written (``shared_memory_byte_size``), and no data."""
        owner = self.admit(caller)
        for tensor in response.outputs:
            parameters = response.output_parameters.get(tensor.name, {})
            if REGION not in parameters:
                continue
            what = f"output '{tensor.name}'"
            region = self._region(owner, str(parameters[REGION]))
            data = to_binary(tensor.datatype, tensor.data)
            room = _integer(parameters, BYTE_SIZE, what, None)
            if len(data) > room:
                raise InvalidArgument(
                    f"{what} needs {len(data)} bytes; shared_memory_byte_size gives {room}"
                )
            start = region.span(_integer(parameters, OFFSET, what, 0), len(data), what)
            region.memory[start : start + len(data)] = data
            tensor.parameters = {REGION: region.name, BYTE_SIZE: len(data)}

    def close(self) -> None:
        """Unmap every region (the server stops)."""
        for region in self._regions.values():
            region.close()
        self._regions.clear()
        self._bytes = 0


def in_shared_memory(parameters: dict[str, Any]) -> bool:
    """An output the encoders leave to its region (its data is there already)."""
    return REGION in parameters


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False

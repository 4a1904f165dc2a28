"""The system shared memory registry (core/serving/shm.py): owners, modes, limits and bounds."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from inferd.core.messages import InferRequest, InferResponse
from inferd.core.serving.shm import SharedMemory, shared_input
from inferd.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from inferd.http.app import create_app
from inferd.settings import SharedMemorySettings
from inferd.types import Tensor
from tests.compat.models import write_models
from tests.conftest import NodeFactory

LOCAL = ("tenant", "127.0.0.1")
OTHER = ("other", "127.0.0.1")
REMOTE = ("tenant", "203.0.113.9")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A stand-in for /dev/shm with one 64-byte object."""
    (tmp_path / "obj").write_bytes(bytes(range(64)))
    return tmp_path


def memory(root: Path, **settings: object) -> SharedMemory:
    return SharedMemory(SharedMemorySettings.model_validate(settings), root)


def test_a_region_is_its_owners_alone(root: Path) -> None:
    shm = memory(root)
    shm.register(LOCAL, "r", "/obj", 8, 16)
    assert shm.status(LOCAL, None) == [{"name": "r", "key": "/obj", "offset": 8, "byte_size": 16}]
    assert shm.status(OTHER, None) == []
    with pytest.raises(NotFound):
        shm.status(OTHER, "r")
    shm.unregister(OTHER, "r")  # nothing of theirs: nothing happens
    assert len(shm.status(LOCAL, None)) == 1
    shm.register(OTHER, "r", "/obj", 0, 8)  # the same name, in the other's namespace
    with pytest.raises(InvalidArgument, match="already registered"):
        shm.register(LOCAL, "r", "/obj", 0, 8)
    shm.unregister(LOCAL, None)
    assert shm.status(LOCAL, None) == [] and len(shm.status(OTHER, None)) == 1


@pytest.mark.parametrize(
    ("mode", "caller", "allowed"),
    [
        ("local", LOCAL, True),
        ("local", REMOTE, False),
        ("any", REMOTE, True),
        ("off", LOCAL, False),
    ],
)
def test_modes(root: Path, mode: str, caller: tuple[str, str], allowed: bool) -> None:
    shm = memory(root, mode=mode)
    if allowed:
        shm.register(caller, "r", "/obj", 0, 8)
    else:
        with pytest.raises(PermissionDenied):
            shm.register(caller, "r", "/obj", 0, 8)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("/../obj", "not a POSIX shared memory name"),
        ("/a/b", "not a POSIX shared memory name"),
        ("/missing", "cannot be opened"),
        ("/link", "cannot be opened"),  # a symbolic link is not followed
        ("/dir", "cannot be opened"),
    ],
)
def test_only_shared_memory_objects(root: Path, key: str, message: str) -> None:
    (root / "link").symlink_to(root / "obj")
    (root / "dir").mkdir()
    with pytest.raises(InvalidArgument, match=message):
        memory(root).register(LOCAL, "r", key, 0, 8)


def test_bounds_and_limits(root: Path) -> None:
    shm = memory(root, max_regions=2, max_total_bytes=40)
    with pytest.raises(InvalidArgument, match="run past shared memory object"):
        shm.register(LOCAL, "r", "/obj", 60, 8)
    shm.register(LOCAL, "a", "/obj", 0, 32)
    with pytest.raises(ResourceExhausted, match="max_total_bytes"):
        shm.register(LOCAL, "b", "/obj", 0, 16)
    shm.register(LOCAL, "b", "/obj", 0, 8)
    with pytest.raises(ResourceExhausted, match="max_regions"):
        shm.register(LOCAL, "c", "/obj", 0, 1)
    shm.unregister(LOCAL, "a")
    shm.register(LOCAL, "c", "/obj", 0, 32)  # its room is free again


def test_inputs_and_outputs_through_a_region(root: Path) -> None:
    shm = memory(root)
    shm.register(LOCAL, "r", "/obj", 16, 48)
    x = shared_input(
        "x",
        "UINT8",
        (4,),
        {"shared_memory_region": "r", "shared_memory_byte_size": 4, "shared_memory_offset": 2},
    )
    request = InferRequest("m", [x], shared_memory=True)
    shm.resolve(LOCAL, request)
    assert request.inputs[0].decode().tolist() == [18, 19, 20, 21]
    with pytest.raises(NotFound):
        shm.resolve(OTHER, InferRequest("m", [x], shared_memory=True))
    past = shared_input(
        "x",
        "UINT8",
        (8,),
        {"shared_memory_region": "r", "shared_memory_byte_size": 8, "shared_memory_offset": 44},
    )
    with pytest.raises(InvalidArgument, match="run past region 'r'"):
        shm.resolve(LOCAL, InferRequest("m", [past], shared_memory=True))
    out = Tensor("y", "INT32", np.array([7, 8], dtype=np.int32))
    params = {"shared_memory_region": "r", "shared_memory_byte_size": 8}
    response = InferResponse("m", "1", [out], output_parameters={"y": params})
    shm.write_outputs(LOCAL, response)
    assert (root / "obj").read_bytes()[16:24] == np.array([7, 8], dtype="<i4").tobytes()
    assert out.parameters == {"shared_memory_region": "r", "shared_memory_byte_size": 8}
    small = {"shared_memory_region": "r", "shared_memory_byte_size": 4}
    with pytest.raises(InvalidArgument, match="needs 8 bytes"):
        shm.write_outputs(LOCAL, InferResponse("m", "1", [out], output_parameters={"y": small}))


def test_unregister_and_close_unmap(root: Path) -> None:
    shm = memory(root)
    shm.register(LOCAL, "r", "/obj", 0, 8)
    fds = len(os.listdir("/proc/self/fd"))
    shm.register(LOCAL, "s", "/obj", 0, 8)
    assert len(os.listdir("/proc/self/fd")) == fds + 1
    shm.unregister(LOCAL, "s")
    assert len(os.listdir("/proc/self/fd")) == fds
    shm.close()
    assert len(os.listdir("/proc/self/fd")) == fds - 1
    assert shm.status(LOCAL, None) == []


async def test_rest_routes_refuse_a_remote_caller(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(write_models(tmp_path, "simple"))
    await node.start()
    transport = httpx.ASGITransport(app=create_app(node), client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://inferd") as client:
        answer = await client.get("/v2/systemsharedmemory/status")
        assert answer.status_code == 403
        assert "shared_memory.mode: local" in answer.json()["error"]
        body = {
            "inputs": [
                {
                    "name": n,
                    "datatype": "INT32",
                    "shape": [1, 16],
                    "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 64},
                }
                for n in ("INPUT0", "INPUT1")
            ]
        }
        answer = await client.post("/v2/models/simple/infer", json=body)
        assert answer.status_code == 403


def test_refused_under_several_workers(root: Path) -> None:
    shm = SharedMemory(SharedMemorySettings(), root, workers=2)
    with pytest.raises(PermissionDenied, match="needs one process"):
        shm.register(LOCAL, "r", "/obj", 0, 8)

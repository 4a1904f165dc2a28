"""System shared memory with tritonclient's own helpers (tritonclient.utils.shared_memory)
against a real server, over REST and gRPC: inputs read from and outputs written to
registered regions, and what one caller's regions look like to another."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from inferd.gateway.keys import Scope, new_key
from tests.compat.models import write_models
from tests.conftest import ServerProcess

KEY_A, ENTRY_A = new_key("tenant-a", Scope.INFER)
KEY_B, ENTRY_B = new_key("tenant-b", Scope.INFER)
A = np.arange(16, dtype=np.int32).reshape(1, 16)
B = np.ones((1, 16), dtype=np.int32)
SIZE = A.nbytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = write_models(tmp_path_factory.mktemp("shm"), "simple")
    keys = root.parent / "keys"
    keys.write_text(f"{ENTRY_A.line()}\n{ENTRY_B.line()}\n")
    process = ServerProcess(root, env={"INFERENCE_SERVER__API_KEYS_FILE": str(keys)})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def regions() -> Iterator[dict[str, Any]]:
    """Input and output regions, filled with A and B; destroyed after the test."""
    tag = uuid.uuid4().hex[:8]
    made = {
        "input": shm.create_shared_memory_region(f"in_{tag}", f"/inferd_in_{tag}", 2 * SIZE),
        "output": shm.create_shared_memory_region(f"out_{tag}", f"/inferd_out_{tag}", 2 * SIZE),
        "tag": tag,
    }
    shm.set_shared_memory_region(made["input"], [A])
    shm.set_shared_memory_region(made["input"], [B], offset=SIZE)
    yield made
    shm.destroy_shared_memory_region(made["input"])
    shm.destroy_shared_memory_region(made["output"])


def headers(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def run(client: Any, module: Any, tag: str, key: str) -> None:
    """Register both regions, infer with inputs and outputs in them, check, unregister."""
    h = headers(key)
    client.register_system_shared_memory(f"in_{tag}", f"/inferd_in_{tag}", 2 * SIZE, headers=h)
    client.register_system_shared_memory(f"out_{tag}", f"/inferd_out_{tag}", 2 * SIZE, headers=h)
    inputs = [
        module.InferInput("INPUT0", [1, 16], "INT32"),
        module.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    inputs[0].set_shared_memory(f"in_{tag}", SIZE)
    inputs[1].set_shared_memory(f"in_{tag}", SIZE, offset=SIZE)
    outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("OUTPUT1")]
    outputs[0].set_shared_memory(f"out_{tag}", SIZE)
    outputs[1].set_shared_memory(f"out_{tag}", SIZE, offset=SIZE)
    result = client.infer("simple", inputs, outputs=outputs, headers=h)
    out0 = result.get_output("OUTPUT0")
    # The answer names the region and the bytes written, and carries no data.
    if isinstance(out0, dict):
        assert out0["parameters"] == {
            "shared_memory_region": f"out_{tag}",
            "shared_memory_byte_size": SIZE,
        }
        assert "data" not in out0
    else:
        assert out0.parameters["shared_memory_byte_size"].int64_param == SIZE
        assert not result.get_response().raw_output_contents[0]


def status_names(status: Any) -> set[str]:
    if isinstance(status, list):
        return {r["name"] for r in status}
    return set(status.regions)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_inputs_and_outputs_in_shared_memory(
    server: ServerProcess, regions: dict[str, Any], protocol: str
) -> None:
    tag = regions["tag"]
    if protocol == "http":
        client: Any = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        module: Any = httpclient
    else:
        client = grpcclient.InferenceServerClient(server.grpc_target)
        module = grpcclient
    with client:
        run(client, module, tag, KEY_A)
        got0 = shm.get_contents_as_numpy(regions["output"], np.int32, [1, 16])
        got1 = shm.get_contents_as_numpy(regions["output"], np.int32, [1, 16], offset=SIZE)
        np.testing.assert_array_equal(got0, A + B)
        np.testing.assert_array_equal(got1, A - B)
        status = client.get_system_shared_memory_status(headers=headers(KEY_A))
        assert status_names(status) == {f"in_{tag}", f"out_{tag}"}
        # Another key sees none of them, cannot use them, cannot unregister them.
        assert status_names(client.get_system_shared_memory_status(headers=headers(KEY_B))) == set()
        client.unregister_system_shared_memory(f"in_{tag}", headers=headers(KEY_B))
        inputs = [
            module.InferInput("INPUT0", [1, 16], "INT32"),
            module.InferInput("INPUT1", [1, 16], "INT32"),
        ]
        inputs[0].set_shared_memory(f"in_{tag}", SIZE)
        inputs[1].set_shared_memory(f"in_{tag}", SIZE, offset=SIZE)
        with pytest.raises(InferenceServerException, match=f"no shared memory region 'in_{tag}'"):
            client.infer("simple", inputs, headers=headers(KEY_B))
        assert status_names(client.get_system_shared_memory_status(headers=headers(KEY_A))) == {
            f"in_{tag}",
            f"out_{tag}",
        }
        client.unregister_system_shared_memory(headers=headers(KEY_A))
        assert status_names(client.get_system_shared_memory_status(headers=headers(KEY_A))) == set()


def test_a_region_past_its_object_is_refused(
    server: ServerProcess, regions: dict[str, Any]
) -> None:
    tag = regions["tag"]
    with httpclient.InferenceServerClient(server.url.removeprefix("http://")) as client:
        with pytest.raises(InferenceServerException, match="run past shared memory object"):
            client.register_system_shared_memory(
                f"big_{tag}", f"/inferd_in_{tag}", 4 * SIZE, headers=headers(KEY_A)
            )
        with pytest.raises(InferenceServerException, match="not a POSIX shared memory name"):
            client.register_system_shared_memory(
                f"etc_{tag}", "/../etc/passwd", 8, headers=headers(KEY_A)
            )

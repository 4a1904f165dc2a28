"""InferenceService behaviour that no single transport owns."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from inferd.core.messages import InferRequest
from inferd.errors import InvalidArgument, Unavailable
from inferd.types import Tensor
from tests.core.test_repository import make_model


def request(**fields: object) -> InferRequest:
    return InferRequest("m", [Tensor("x", "FP32", np.ones((1, 2), dtype=np.float32))], **fields)  # type: ignore[arg-type]


@pytest.fixture
async def service(tmp_path: Path, service_factory):  # type: ignore[no-untyped-def]
    make_model(tmp_path, "m", ["1"], "timeout_s: 7\n")
    svc = service_factory(tmp_path, performance={"inference_timeout_s": 30})
    assert not svc.ready()  # nothing loaded yet
    await svc.start()
    assert svc.ready()
    return svc


async def test_deadline_is_the_earliest_given(service) -> None:  # type: ignore[no-untyped-def]
    loaded = service.manager.resolve("m")
    now = time.monotonic()
    header = request(deadline=now + 5)
    assert service.deadline(loaded, header) == now + 5
    both = request(deadline=now + 5, parameters={"timeout": 1_000_000})
    assert service.deadline(loaded, both) < now + 2
    param = request(parameters={"timeout": 9_000_000})
    assert 8 < service.deadline(loaded, param) - now < 10
    default = request()
    assert 6 < service.deadline(loaded, default) - now < 8  # the model's timeout_s
    with pytest.raises(InvalidArgument, match="timeout"):
        service.deadline(loaded, request(parameters={"timeout": 1.5}))


async def test_draining_refuses_new_work(service) -> None:  # type: ignore[no-untyped-def]
    assert (await service.infer(request())).outputs[0].data.tolist() == [[1.0, 1.0]]
    assert await service.drain(1.0)
    assert not service.ready()
    with pytest.raises(Unavailable, match="shutting down"):
        await service.infer(request())

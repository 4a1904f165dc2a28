"""InferenceService behaviour that no single transport owns."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from inferd.core.messages import InferRequest
from inferd.errors import InternalError, InvalidArgument, Unavailable
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


RAISER = (
    "class Model:\n"
    "    def predict(self, inputs):\n"
    "        raise ValueError('cannot open /srv/secret/weights.bin')\n"
)


def raiser_repository(root: Path) -> Path:
    """``raiser`` (x: FP32 [-1, 2]; its predict raises, with a path in the message)."""
    folder = make_model(root, "raiser", ["1"], "warmup: false\n")
    (folder / "1" / "model.py").write_text(RAISER)
    return root


async def test_a_model_that_raises_is_logged_and_answered_with_the_request_id(
    tmp_path: Path, service_factory, caplog: pytest.LogCaptureFixture
) -> None:
    service = service_factory(raiser_repository(tmp_path))
    await service.start()
    raising = InferRequest(
        "raiser", [Tensor("x", "FP32", np.ones((1, 2), dtype=np.float32))], id="r-1"
    )
    with pytest.raises(InternalError) as caught:
        await service.infer(raising)
    assert caught.value.message == "internal error (request id r-1)"
    (record,) = [r for r in caplog.records if r.name == "inferd.service"]
    assert record.getMessage() == (
        "model 'raiser' version '1' failed (request id r-1): model 'raiser' failed: "
        "ValueError: cannot open /srv/secret/weights.bin"
    )
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert "raise ValueError" in caplog.text  # the model's own frame is in the traceback
    assert (
        b'inferd_model_failures_total{model="raiser",version="1"} 1.0' in service.metrics.render()
    )


async def test_a_request_without_an_id_gets_one(
    tmp_path: Path, service_factory, caplog: pytest.LogCaptureFixture
) -> None:
    service = service_factory(raiser_repository(tmp_path))
    await service.start()
    raising = InferRequest("raiser", [Tensor("x", "FP32", np.ones((1, 2), dtype=np.float32))])
    with pytest.raises(InternalError) as caught:
        await service.infer(raising)
    made = re.fullmatch(r"internal error \(request id ([0-9a-f]{32})\)", caught.value.message)
    assert made is not None
    assert f"(request id {made.group(1)})" in caplog.text

"""InferenceService behaviour that no single transport owns."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from inferd.core.messages import InferRequest
from inferd.core.parameters import deadline
from inferd.errors import InferdError, InternalError, InvalidArgument, Unavailable
from inferd.tensors import WireTensor
from inferd.types import Tensor
from tests.conftest import NodeFactory
from tests.core.store.test_repository import make_model
from tests.rollout_models import write_model


def request(**fields: object) -> InferRequest:
    return InferRequest("m", [Tensor("x", "FP32", np.ones((1, 2), dtype=np.float32))], **fields)  # type: ignore[arg-type]


@pytest.fixture
async def node(tmp_path: Path, node_factory):  # type: ignore[no-untyped-def]
    make_model(tmp_path, "m", ["1"], "timeout_s: 7\n")
    svc = node_factory(tmp_path, performance={"inference_timeout_s": 30})
    assert not svc.catalog.ready()  # nothing loaded yet
    await svc.start()
    assert svc.catalog.ready()
    return svc


async def test_deadline_is_the_earliest_given(node) -> None:  # type: ignore[no-untyped-def]
    loaded = node.manager.resolve("m")
    assert loaded.settings.timeout_s == 7  # the model's own, over the server's 30

    def due(r: InferRequest) -> float:
        return deadline(r.deadline, r.parameters, loaded.settings.timeout_s)

    now = time.monotonic()
    header = request(deadline=now + 5)
    assert due(header) == now + 5
    both = request(deadline=now + 5, parameters={"timeout": 1_000_000})
    assert due(both) < now + 2
    param = request(parameters={"timeout": 9_000_000})
    assert 8 < due(param) - now < 10
    default = request()
    assert 6 < due(default) - now < 8  # the model's timeout_s
    with pytest.raises(InvalidArgument, match="timeout"):
        due(request(parameters={"timeout": 1.5}))


async def test_draining_refuses_new_work(node) -> None:  # type: ignore[no-untyped-def]
    assert (await node.service.infer(request())).outputs[0].data.tolist() == [[1.0, 1.0]]
    assert await node.drain(1.0)
    assert not node.catalog.ready()
    with pytest.raises(Unavailable, match="shutting down"):
        await node.service.infer(request())


async def test_draining_stops_driving_the_rollouts(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(write_model(tmp_path, "m", fail_every=0))
    await node.start()
    node.control.start_rollout("m", {"to": "2", "step_interval_s": 3600})
    assert list(node.control.rollouts.running) == ["m"]
    assert await node.drain(1.0)
    assert node.control.rollouts.running == {}
    assert node.control.rollout("m")["split"] == {"1": 95, "2": 5}  # left where it was


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
    tmp_path: Path, node_factory, caplog: pytest.LogCaptureFixture
) -> None:
    node = node_factory(raiser_repository(tmp_path))
    await node.start()
    raising = InferRequest(
        "raiser", [Tensor("x", "FP32", np.ones((1, 2), dtype=np.float32))], id="r-1"
    )
    with pytest.raises(InternalError) as caught:
        await node.service.infer(raising)
    assert caught.value.message == "internal error (request id r-1)"
    (record,) = [r for r in caplog.records if r.name == "inferd.service"]
    assert record.getMessage() == (
        "model 'raiser' version '1' failed (request id r-1): model 'raiser' failed: "
        "ValueError: cannot open /srv/secret/weights.bin"
    )
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert "raise ValueError" in caplog.text  # the model's own frame is in the traceback
    assert b'inferd_model_failures_total{model="raiser",version="1"} 1.0' in node.metrics.render()


async def test_a_request_without_an_id_gets_one(
    tmp_path: Path, node_factory, caplog: pytest.LogCaptureFixture
) -> None:
    node = node_factory(raiser_repository(tmp_path))
    await node.start()
    raising = InferRequest("raiser", [Tensor("x", "FP32", np.ones((1, 2), dtype=np.float32))])
    with pytest.raises(InternalError) as caught:
        await node.service.infer(raising)
    made = re.fullmatch(r"internal error \(request id ([0-9a-f]{32})\)", caught.value.message)
    assert made is not None
    assert f"(request id {made.group(1)})" in caplog.text


async def test_names_not_served_count_under_one_label(node) -> None:  # type: ignore[no-untyped-def]
    for name in ("nope", "x" * 5000, "../etc"):
        with pytest.raises(InferdError):
            await node.service.infer(InferRequest(name, request().inputs))
    for version in ("9" * 3000, "7"):
        with pytest.raises(InferdError):
            await node.service.infer(request(version=version))
    text = node.metrics.render().decode()
    assert "nope" not in text
    assert 'version="999' not in text
    assert 'inferd_requests_total{model="_unknown",protocol="rest",status="not_found",' in text
    assert 'model="m",protocol="rest",status="invalid_argument",version="_unknown"' in text
    assert 'model="m",protocol="rest",status="not_found",version="_unknown"' in text
    assert 'version="7"' not in text


async def test_unloading_a_model_drops_its_series(node) -> None:  # type: ignore[no-untyped-def]
    await node.service.infer(request())
    assert 'model="m"' in node.metrics.render().decode()
    await node.control.unload_model("m")
    assert 'model="m"' not in node.metrics.render().decode()


async def test_the_header_is_checked_before_any_element_is_decoded(node) -> None:  # type: ignore[no-untyped-def]
    decoded: list[str] = []

    def decoder() -> np.ndarray:  # type: ignore[type-arg]
        decoded.append("x")
        return np.ones((1, 2), dtype=np.float32)

    for datatype, shape, message in [
        ("BYTES", (1, 2), "expected datatype FP32, got BYTES"),
        ("FP32", (1, 3), "expected shape [-1, 2], got [1, 3]"),
    ]:
        wire = WireTensor("x", datatype, shape, decoder, cost=10**9)
        with pytest.raises(InvalidArgument, match=re.escape(message)):
            await node.service.infer(InferRequest("m", [wire]))
    assert decoded == []
    wire = WireTensor("x", "FP32", (1, 2), decoder, cost=10**9)  # decoded in a thread
    assert (await node.service.infer(InferRequest("m", [wire]))).outputs[0].data.tolist() == [
        [1, 1]
    ]
    assert decoded == ["x"]


def python_model(root: Path, name: str, body: str, extra_yaml: str = "") -> None:
    """A model ``x`` (FP32 [-1, 2]) -> ``y`` (FP32 [-1, 2]) whose predict returns ``body``."""
    (root / name / "1").mkdir(parents=True)
    (root / name / "1" / "model.py").write_text(
        "import numpy as np\n\n\nclass Model:\n    def predict(self, inputs):\n"
        f"        x = inputs['x']\n        return {body}\n"
    )
    (root / name / "model.yaml").write_text(
        "runtime: python\n"
        "inputs: [{name: x, datatype: FP32, shape: [-1, 2]}]\n"
        "outputs: [{name: y, datatype: FP32, shape: [-1, 2]}]\n" + extra_yaml
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "{'y': np.zeros((1, 3, 5), np.float32)}",
            "output 'y': declared FP32 [-1, 2], got float32 [1, 3, 5]",
        ),
        ("{'y': np.array([['a', 'b']])}", "output 'y': declared FP32 [-1, 2], got <U1 [1, 2]"),
        ("{'z': x}", "output 'y': declared FP32 [-1, 2], not produced"),
    ],
)
async def test_warm_up_refuses_outputs_unlike_the_declaration(
    tmp_path: Path,
    node_factory,
    body: str,
    reason: str,  # type: ignore[no-untyped-def]
) -> None:
    python_model(tmp_path, "bad", body)
    node = node_factory(tmp_path)
    await node.start()
    (row,) = node.control.repository_index(full=True)
    assert row["state"] == "FAILED"
    assert reason in row["reason"]
    assert "at warm-up" in row["reason"]
    assert node.control.repository_index()[0]["reason"] == "load_failed: warmup_error"


async def test_outputs_are_checked_on_every_batch(
    tmp_path: Path,
    node_factory,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    # Right at warm-up (one row), wrong for a batch of three.
    python_model(
        tmp_path, "drift", "{'y': np.zeros((len(x), 2 if len(x) == 1 else 3), np.float32)}"
    )
    node = node_factory(tmp_path)
    await node.start()
    ok = InferRequest("drift", [Tensor("x", "FP32", np.ones((1, 2), np.float32))])
    assert (await node.service.infer(ok)).outputs[0].data.shape == (1, 2)
    bad = InferRequest("drift", [Tensor("x", "FP32", np.ones((3, 2), np.float32))], id="d-1")
    with pytest.raises(InternalError) as caught:
        await node.service.infer(bad)
    assert caught.value.message == "internal error (request id d-1)"
    assert "output 'y': declared FP32 [-1, 2], got float32 [3, 3]" in caplog.text
    assert (
        "model 'drift' version '1' failed (request id d-1): internal error: model 'drift' "
        "returned outputs that do not match its declaration"
    ) in caplog.text


@pytest.mark.parametrize(
    "policy", ["", "nonfinite_outputs: error\n", "nonfinite_outputs: encode\n"]
)
async def test_nonfinite_outputs_follow_the_model_policy(
    tmp_path: Path,
    node_factory,
    policy: str,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    python_model(
        tmp_path, "nan", "{'y': np.array([[np.nan, np.inf]] * len(x), np.float32)}", policy
    )
    node = node_factory(tmp_path, safeguards={"input_validation": {"enabled": False}})
    await node.start()
    inputs = [Tensor("x", "FP32", np.array([[0.0, 1.0]], np.float32))]
    if "encode" in policy:
        array = (await node.service.infer(InferRequest("nan", inputs))).outputs[0].data
        assert np.isnan(array[0, 0]) and np.isposinf(array[0, 1])
        result = await node.service.predict(
            "nan", None, [0.0, -1.0], batched=False, protocol="rest"
        )
        assert result.predictions == ["NaN", "Infinity"]
    else:
        with pytest.raises(InternalError, match=r"internal error \(request id n-1\)"):
            await node.service.infer(InferRequest("nan", inputs, id="n-1"))
        assert "model 'nan' produced NaN or Inf in output 'y'" in caplog.text

"""The rollouts of a server: which version is stable, one rollout per model, their tasks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from inferd.core.messages import InferRequest
from inferd.core.traffic.rollout import State
from inferd.core.traffic.rollouts import Rollouts, stable_version
from inferd.errors import Conflict, InvalidArgument, NotFound
from inferd.types import Tensor
from tests.conftest import NodeFactory, until
from tests.core.traffic.test_rollout import FakeRouter
from tests.rollout_models import write_model

FAST = {"to": "2", "steps": [50, 100], "step_interval_s": 0.01, "min_requests": 1}


@pytest.fixture
async def rollouts() -> AsyncIterator[tuple[Rollouts, FakeRouter]]:
    router = FakeRouter(("1", "2", "10"))
    made = Rollouts(router, router.versions)
    yield made, router
    await made.close()


async def settled(rollouts: Rollouts, model: str = "m") -> None:
    """Until the model's rollout is no longer running (its task ended)."""
    await until(lambda: model not in rollouts.running, 10, f"{model}'s rollout to end")


@pytest.mark.parametrize(
    ("split", "canary", "stable"),
    [
        (None, "2", "10"),  # the latest, in natural order
        ({"1": 90, "2": 10}, "2", "1"),
        ({"1": 10, "2": 90}, "10", "2"),
        ({"1": 50, "2": 50}, "10", "2"),  # a tie: the later version
        ({"1": 0, "2": 90, "10": 10}, "2", "10"),  # the canary's own weight is left out
    ],
)
def test_the_stable_version(split: dict[str, int] | None, canary: str, stable: str) -> None:
    assert stable_version("m", canary, split, ["1", "2", "10"]) == stable


def test_the_latest_without_a_split_cannot_be_rolled_out() -> None:
    with pytest.raises(InvalidArgument) as caught:
        stable_version("m", "10", None, ["1", "2", "10"])
    assert caught.value.message.startswith(
        "version '10' of model 'm' is the latest and the model has no traffic split"
    )
    assert 'PUT /v2/models/m/traffic {"<stable>": 100}' in caught.value.message


def test_a_canary_with_all_the_traffic_cannot_be_rolled_out() -> None:
    with pytest.raises(InvalidArgument, match="already takes all the traffic"):
        stable_version("m", "2", {"1": 0, "2": 100}, ["1", "2"])


async def test_a_rollout_runs_to_completion_on_its_own(
    rollouts: tuple[Rollouts, FakeRouter],
) -> None:
    made, router = rollouts
    rollout = made.start("m", FAST)
    assert made.running == {"m": rollout}
    assert router.split == {"10": 50, "2": 50}
    rollout.record("10", "ok", 0.001)
    rollout.record("2", "ok", 0.001)
    await settled(made)
    assert rollout.state is State.SUCCEEDED
    assert router.split == {"2": 100}
    assert made.get("m") is rollout


async def test_a_second_rollout_of_a_model_conflicts(
    rollouts: tuple[Rollouts, FakeRouter],
) -> None:
    made, _router = rollouts
    made.start("m", {**FAST, "step_interval_s": 60})
    with pytest.raises(Conflict) as caught:
        made.start("m", {**FAST, "to": "1"})
    assert caught.value.message == (
        "a rollout of model 'm' to version '2' is running; DELETE /v2/models/m/rollout stops it"
    )


async def test_a_version_that_is_not_served_is_refused(
    rollouts: tuple[Rollouts, FakeRouter],
) -> None:
    made, router = rollouts
    with pytest.raises(InvalidArgument) as caught:
        made.start("m", {**FAST, "to": "3"})
    assert caught.value.message == (
        "version '3' of model 'm' is not served; serving ['1', '2', '10']"
    )
    assert made.running == {} and router.split is None


async def test_an_unknown_model_is_not_found(rollouts: tuple[Rollouts, FakeRouter]) -> None:
    made, _ = rollouts
    for call in (lambda: made.start("x", FAST), lambda: made.get("x"), lambda: made.abort("x")):
        with pytest.raises(NotFound, match="model 'x' is not known"):
            call()


async def test_no_rollout_yet_is_not_found(rollouts: tuple[Rollouts, FakeRouter]) -> None:
    made, _ = rollouts
    with pytest.raises(NotFound, match="model 'm' has had no rollout since the server started"):
        made.get("m")


async def test_abort_stops_the_task_and_keeps_the_rollout_to_show(
    rollouts: tuple[Rollouts, FakeRouter],
) -> None:
    made, router = rollouts
    made.start("m", {**FAST, "step_interval_s": 60})
    rollout = made.abort("m")
    assert (rollout.state, router.split, made.running) == (State.ABORTED, {"10": 100}, {})
    assert made.abort("m") is rollout  # ended: left as it is
    assert [r.decision.value for r in rollout.decisions] == ["start", "abort"]
    # A new rollout may start once the last one has ended.
    assert made.start("m", {**FAST, "step_interval_s": 60}).state is State.RUNNING


async def test_close_stops_driving(rollouts: tuple[Rollouts, FakeRouter]) -> None:
    made, router = rollouts
    rollout = made.start("m", FAST)
    await made.close()
    assert made.running == {}
    rollout.record("10", "ok", 0.001)
    rollout.record("2", "ok", 0.001)
    await asyncio.sleep(0.05)  # several step lengths: nothing drives it any more
    assert (rollout.state, router.split) == (State.RUNNING, {"10": 50, "2": 50})


async def test_two_identical_versions_under_load_never_roll_back(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(write_model(tmp_path, "m", fail_every=0))
    await node.start()
    request = InferRequest("m", [Tensor("x", "FP32", np.ones((1, 2), dtype=np.float32))])
    # One step at 50 %: each rollout judges at least one window of 300 requests a version,
    # the size from which the p99 guard's bounds are ranks inside the window
    # (inferd.core.traffic.window.Window.p99_bounds). With 100, the canary's bound was its
    # 97th fastest of 100: four requests slowed together (one paused batch on a loaded
    # machine) in each of two windows rolled identical versions back, once in ~10 suites.
    plan = {"to": "2", "steps": [50, 100], "step_interval_s": 0.01, "min_requests": 300}

    async def client() -> None:  # one request after the other, as long as the rollout runs
        while node.control.rollout("m")["state"] == "running":
            await node.service.infer(request)

    for _ in range(20):
        node.control.set_traffic("m", {"1": 100})
        node.control.start_rollout("m", plan)
        async with asyncio.timeout(30):
            await asyncio.gather(*(client() for _ in range(8)))
        view = node.control.rollout("m")
        assert view["state"] == "succeeded", [d.get("reason") for d in view["decisions"]]

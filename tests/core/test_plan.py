"""Serving plans: a version's requests pass through exactly the steps that are on for it,
decided when it starts serving and whenever its model's shadow or rollout changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from inferd.core.plan import BARE
from tests.conftest import NodeFactory


def _tiny(root: Path, example_repo: Path, **config: object) -> Path:
    """The example's tiny model with versions 1 and 2 and ``config`` in its model.yaml."""
    repo = root / "models"
    model = repo / "tiny"
    shutil.copytree(example_repo / "tiny", model)
    shutil.copytree(model / "1", model / "2")
    doc = yaml.safe_load((model / "model.yaml").read_text())
    doc["version_policy"] = {"all": True}
    (model / "model.yaml").write_text(yaml.safe_dump({**doc, **config}))
    return repo


async def test_a_version_with_nothing_on_has_the_bare_plan(
    example_repo: Path, node_factory: NodeFactory, tmp_path: Path
) -> None:
    node = node_factory(_tiny(tmp_path, example_repo, nonfinite_outputs="encode"))
    await node.start()
    for version in ("1", "2"):
        assert node.router.named("tiny", version).plan == BARE


async def test_cache_and_the_finite_check_come_from_model_yaml(
    example_repo: Path, node_factory: NodeFactory, tmp_path: Path
) -> None:
    node = node_factory(_tiny(tmp_path, example_repo, cache={"enabled": True}))
    await node.start()
    assert node.router.named("tiny", "1").plan.steps() == ["cache", "finite_check"]


async def test_a_shadow_is_in_the_primary_versions_plans_until_it_stops(
    example_repo: Path, node_factory: NodeFactory, tmp_path: Path
) -> None:
    repo = _tiny(tmp_path, example_repo, nonfinite_outputs="encode")
    node = node_factory(repo)
    await node.start()
    node.control.set_shadow("tiny", {"version": "2", "fraction": 0.5})
    assert node.router.named("tiny", "1").plan.steps() == ["shadow"]
    assert node.router.named("tiny", "2").plan == BARE  # not mirrored to itself
    node.control.set_shadow("tiny", None)
    assert node.router.named("tiny", "1").plan == BARE


async def test_a_running_rollouts_window_is_in_its_two_versions_plans(
    example_repo: Path, node_factory: NodeFactory, tmp_path: Path
) -> None:
    repo = _tiny(tmp_path, example_repo, nonfinite_outputs="encode", traffic={"1": 100})
    node = node_factory(repo)
    await node.start()
    node.control.start_rollout("tiny", {"to": "2", "steps": [10, 100], "step_interval_s": 60})
    for version in ("1", "2"):
        assert node.router.named("tiny", version).plan.steps() == ["rollout_window"]
    node.control.abort_rollout("tiny")
    for version in ("1", "2"):
        assert node.router.named("tiny", version).plan == BARE


async def test_a_reload_gives_the_new_instances_their_plans(
    example_repo: Path, node_factory: NodeFactory, tmp_path: Path
) -> None:
    repo = _tiny(tmp_path, example_repo, cache={"enabled": True})
    node = node_factory(repo)
    await node.start()
    before = node.router.named("tiny", "1")
    await node.control.load_model("tiny")
    after = node.router.named("tiny", "1")
    assert after is not before
    assert after.plan.steps() == ["cache", "finite_check"]

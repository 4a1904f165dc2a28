"""The process group: merged statistics and readiness over Unix sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inferd.core.store.group import ProcessGroup, merge_stats


def entry(name: str, success: int, last: int, batches: dict[int, int]) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1",
        "last_inference": last,
        "inference_count": success,
        "inference_stats": {"success": {"count": success, "ns": success * 10}},
        "batch_stats": [
            {"batch_size": size, "compute_infer": {"count": n, "ns": n}}
            for size, n in batches.items()
        ],
    }


def test_stats_of_workers_are_summed_per_version_and_batch_size() -> None:
    merged = merge_stats(
        [
            [entry("a", 2, 100, {1: 2}), entry("b", 1, 5, {})],
            [entry("a", 3, 50, {1: 1, 4: 1})],
        ]
    )
    a = next(e for e in merged if e["name"] == "a")
    assert a["inference_count"] == 5
    assert a["last_inference"] == 100
    assert a["inference_stats"]["success"] == {"count": 5, "ns": 50}
    assert a["batch_stats"] == [
        {"batch_size": 1, "compute_infer": {"count": 3, "ns": 3}},
        {"batch_size": 4, "compute_infer": {"count": 1, "ns": 1}},
    ]
    assert [e["name"] for e in merged] == ["a", "b"]


def snapshot_of(pid: int, ready: bool, stats: list[dict[str, Any]]) -> Any:
    return lambda: {"pid": pid, "ready": ready, "stats": stats}


async def test_a_worker_reads_its_siblings(tmp_path: Path) -> None:
    one = ProcessGroup(tmp_path, 2, snapshot_of(1, True, [entry("a", 2, 1, {})]))
    two = ProcessGroup(tmp_path, 2, snapshot_of(2, False, [entry("a", 3, 1, {})]))
    two.path = tmp_path / "worker-two.sock"  # both live in this one test process
    (tmp_path / "worker-dead.sock").touch()  # what a killed worker leaves behind
    await one.start()
    await two.start()
    try:
        assert await one.ready() == (False, [{"pid": 1, "ready": True}, {"pid": 2, "ready": False}])
        local = {"model_stats": [entry("a", 2, 1, {})]}
        merged = await one.stats(local)
        assert merged["model_stats"][0]["inference_count"] == 5
    finally:
        await two.stop()
    assert await one.ready() == (False, [{"pid": 1, "ready": True}])  # one of two answers
    await one.stop()
    assert not (tmp_path / "worker-two.sock").exists()


async def test_alone_the_group_is_this_process() -> None:
    group = ProcessGroup(None, 1, snapshot_of(7, True, []))
    await group.start()
    assert await group.ready() == (True, [{"pid": 7, "ready": True}])
    assert await group.stats({"model_stats": ["as is"]}) == {"model_stats": ["as is"]}
    await group.stop()

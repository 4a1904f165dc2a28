"""Building a version on its own: specs, the cache digest, warm-up and its timed calls."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from inferd.core.serving.batcher import INLINE_MIN_SAMPLES
from inferd.core.store.failures import WarmupFailed
from inferd.core.store.loaded import LoadedVersion
from inferd.core.store.loader import Loader, check_traffic
from inferd.core.store.repository import Repository
from inferd.errors import NotFound
from inferd.runtimes.base import RUNTIMES
from inferd.runtimes.python import PythonRuntime
from inferd.settings import ModelLimits, PerformanceSettings
from tests.core.store.test_repository import make_model

#: A model that writes the shape of every call's input to ``calls.txt`` beside it.
COUNTING_MODEL = """
import pathlib
import time

CALLS = pathlib.Path(__file__).with_name("calls.txt")
SLEEP_S = {sleep}

class Model:
    def predict(self, inputs):
        with CALLS.open("a") as calls:
            calls.write(f"{{list(inputs['x'].shape)}}\\n")
        time.sleep(SLEEP_S)
        return {{"x": inputs["x"]}}
"""


class InlinePython(PythonRuntime):
    """The Python runtime, as one that may run on the event loop (as ONNX Runtime may)."""

    inline_safe = True


def unresolved(model: str, version: str | None) -> LoadedVersion:
    raise NotFound(f"model '{model}' is not known")


def build(root: Path, name: str = "m", **performance: float) -> LoadedVersion:
    entry = Repository(root).read(name)
    loader = Loader(PerformanceSettings(**performance), ModelLimits(), None, unresolved)
    (version,) = entry.served_versions()
    loaded = loader.build(entry, version, f"model '{name}' version '{version.name}'")
    loaded.runtime.unload()
    return loaded


def counting_model(root: Path, extra_yaml: str = "", sleep: float = 0.0) -> Path:
    folder = make_model(root, "m", ["1"], extra_yaml)
    (folder / "1" / "model.py").write_text(COUNTING_MODEL.format(sleep=sleep))
    return folder / "1" / "calls.txt"


def calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_version_is_built_from_its_declaration(tmp_path: Path) -> None:
    make_model(tmp_path, "m", ["1"], "max_batch_size: 4\n")
    loaded = build(tmp_path)
    assert (loaded.model, loaded.version, loaded.runtime_name) == ("m", "1", "python")
    assert [(s.name, s.datatype, s.shape) for s in loaded.inputs] == [("x", "FP32", (-1, 2))]
    assert loaded.max_batch_size == 4
    assert loaded.generator is None and loaded.sequences is None
    assert loaded.digest == ""  # no cache: nothing hashed at load


def test_the_cache_digest_covers_the_version_files(tmp_path: Path) -> None:
    folder = make_model(tmp_path, "m", ["1"], "cache: {enabled: true}\n")
    first = build(tmp_path).digest
    assert len(first) == 64
    assert build(tmp_path).digest == first
    (folder / "1" / "weights.bin").write_bytes(b"\x01")
    assert build(tmp_path).digest != first


def test_warm_up_runs_one_request_of_zeros_shaped_by_the_declaration(tmp_path: Path) -> None:
    recorded = counting_model(tmp_path)
    build(tmp_path)
    assert calls(recorded) == ["[1, 2]"]  # -1 becomes 1; no timed calls: Python runs off-loop


def test_without_warm_up_the_model_is_not_called(tmp_path: Path) -> None:
    recorded = counting_model(tmp_path, "warmup: false\n")
    build(tmp_path)
    assert calls(recorded) == []


def test_a_warm_up_that_fails_or_answers_wrong_stops_the_load(tmp_path: Path) -> None:
    folder = make_model(tmp_path, "m", ["1"])
    (folder / "1" / "model.py").write_text(
        "class Model:\n    def predict(self, inputs):\n        raise ValueError('cold')\n"
    )
    with pytest.raises(WarmupFailed, match=r"version '1': warm-up failed: .*cold"):
        build(tmp_path)
    (folder / "1" / "model.py").write_text(
        "class Model:\n    def predict(self, inputs):\n        return {'y': inputs['x']}\n"
    )
    with pytest.raises(WarmupFailed, match="at warm-up"):
        build(tmp_path)


def test_a_model_that_may_run_inline_gets_timed_warm_up_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their mean seeds the batcher's measured call cost (see Batcher.seed_call_cost)."""
    monkeypatch.setitem(RUNTIMES, "python", f"{__name__}:InlinePython")
    recorded = counting_model(tmp_path)
    build(tmp_path)
    assert len(calls(recorded)) == 1 + INLINE_MIN_SAMPLES
    recorded.unlink()
    build(tmp_path, inline_max_compute_us=0)  # inline runs off: nothing to measure
    assert len(calls(recorded)) == 1


def test_timed_calls_stop_once_they_took_too_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(RUNTIMES, "python", f"{__name__}:InlinePython")
    recorded = counting_model(tmp_path, sleep=0.06)  # one call is past TIMED_WARMUP_S
    build(tmp_path)
    assert len(calls(recorded)) == 2  # the warm-up, then one timed call


def test_a_split_naming_a_version_not_served_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_model(tmp_path, "m", ["1", "2"], "traffic: {'2': 50, '3': 50, '1': 0}\n")
    entry = Repository(tmp_path).read("m")
    with caplog.at_level(logging.WARNING, logger="inferd.models"):
        check_traffic(entry, entry.served_versions())
    (record,) = caplog.records
    assert (
        "traffic names versions ['3'], which are not served (the version policy serves ['2'])"
        in (record.getMessage())
    )  # the latest only, by default; '1' has no share

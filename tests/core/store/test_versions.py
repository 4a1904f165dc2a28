"""A version's settings, resolved once at load from model.yaml and the server's defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from inferd.core.store.model_config import ModelConfig
from inferd.core.store.versions import batch_dimension, runtime_options, version_settings
from inferd.errors import ConfigError
from inferd.settings import ModelLimits, PerformanceSettings
from inferd.types import TensorSpec

ROWS = (TensorSpec("x", "FP32", (-1, 4)),)
FIXED = (TensorSpec("x", "FP32", (2, 4)),)
PERFORMANCE = PerformanceSettings(
    max_batch_size=16,
    batch_timeout_ms=3,
    max_queue_size=100,
    inference_timeout_s=9,
    intra_op_threads=2,
    inter_op_threads=5,
)
LIMITS = ModelLimits(max_batch_time_s=40)


def settings_of(yaml: dict[str, object], inputs: tuple[TensorSpec, ...] = ROWS):
    return version_settings(ModelConfig.model_validate(yaml), inputs, PERFORMANCE, LIMITS, "m")


def test_the_server_defaults_fill_what_model_yaml_leaves_out() -> None:
    settings = settings_of({})
    assert (settings.max_batch_size, settings.batching) == (16, True)
    assert settings.max_queue_delay_s == pytest.approx(0.003)
    assert (settings.max_queue_size, settings.timeout_s, settings.max_batch_time_s) == (100, 9, 40)
    assert (settings.intra_op_threads, settings.inter_op_threads) == (2, 5)
    assert (settings.cache, settings.nonfinite_outputs, settings.device) == (False, "error", "cpu")


def test_model_yaml_overrides_the_defaults() -> None:
    settings = settings_of(
        {
            "max_batch_size": 4,
            "batching": {
                "max_queue_delay_ms": 0,
                "preferred_batch_sizes": [4, 2],
                "max_queue_size": 7,
            },
            "timeout_s": 1.5,
            "max_batch_time_s": 3,
            "intra_op_threads": 0,
            "cache": {"enabled": True},
        }
    )
    assert (settings.max_batch_size, settings.max_queue_delay_s) == (4, 0.0)
    assert settings.preferred_batch_sizes == (2, 4)
    assert (settings.max_queue_size, settings.timeout_s, settings.max_batch_time_s) == (7, 1.5, 3)
    assert (settings.intra_op_threads, settings.cache) == (0, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.timeout_s = 2  # type: ignore[misc]


def test_whether_a_model_batches_is_decided_once() -> None:
    assert settings_of({}, FIXED).max_batch_size == 0
    assert settings_of({"max_batch_size": 0}).batching is False
    assert batch_dimension(ModelConfig(), ROWS)
    assert not batch_dimension(ModelConfig(max_batch_size=0), ROWS)
    assert not batch_dimension(ModelConfig(), FIXED)
    with pytest.raises(ConfigError, match="m: max_batch_size > 0 needs -1 as the first"):
        settings_of({"max_batch_size": 8}, FIXED)


def test_runtime_options_are_narrow() -> None:
    config = ModelConfig.model_validate(
        {
            "runtime": "python",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
            "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
            "device": "cuda:1",
            "precision": "bf16",
            "inter_op_threads": 3,
            "allow_nonfinite": True,
            "parameters": {"k": 1},
        }
    )
    options = runtime_options(config, Path("m/1/model.py"), PERFORMANCE, model="m", version="1")
    assert (options.device, options.precision) == ("cuda:1", "bf16")
    assert (options.intra_op_threads, options.inter_op_threads) == (2, 3)
    assert options.inputs == (TensorSpec("x", "FP32", (-1, 4), True),)
    assert options.outputs == (TensorSpec("y", "FP32", (-1,), True),)
    assert options.by_row and options.parameters == {"k": 1}
    assert runtime_options(ModelConfig(), Path("m.onnx")).inputs is None


def test_runtimes_do_not_import_the_model_configuration() -> None:
    runtimes = Path(__file__).parents[3] / "src" / "inferd" / "runtimes"
    for module in runtimes.glob("*.py"):
        assert "model_config" not in module.read_text(), module.name

"""A pipeline is checked when it loads: each mistake is refused with a message naming the step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from inferd.core.messages import InferRequest
from inferd.core.store.model_config import read_model_config
from inferd.errors import ConfigError
from inferd.types import Tensor
from tests.conftest import NodeFactory
from tests.core.serving.test_pipeline import ADD_ONE, python_model, tensor

PAIR = """
class Model:
    def predict(self, inputs):
        return {"y": inputs["a"] + inputs["b"]}
"""
STREAM = """
class Model:
    def predict(self, inputs):
        yield {"y": inputs["x"]}
"""
TO_INT = """
import numpy as np


class Model:
    def predict(self, inputs):
        return {"n": inputs["y"].astype(np.int64)}
"""


def repo_with(root: Path, pipeline: dict[str, Any]) -> Path:
    """``add-one`` (FP32 x [-1, 2] -> y), ``to-int`` (FP32 y [-1, 2] -> INT64 n),
    ``wide`` (FP32 x [-1, 3] -> y) and the pipeline ``p``."""
    repo = root / "models"
    for name, code, width, out in (
        ("add-one", ADD_ONE, 2, tensor("y", "FP32", [-1, 2])),
        ("wide", ADD_ONE, 3, tensor("y", "FP32", [-1, 3])),
    ):
        python_model(repo, name, code, inputs=[tensor("x", "FP32", [-1, width])], outputs=[out])
    python_model(
        repo,
        "pair",
        PAIR,
        inputs=[tensor("a", "FP32", [-1, 2]), tensor("b", "FP32", [-1, 2])],
        outputs=[tensor("y", "FP32", [-1, 2])],
    )
    python_model(
        repo,
        "stream",
        STREAM,
        inputs=[tensor("x", "FP32", [-1, 2])],
        outputs=[tensor("y", "FP32", [-1, 2])],
    )
    python_model(
        repo,
        "to-int",
        TO_INT,
        inputs=[tensor("y", "FP32", [-1, 2])],
        outputs=[tensor("n", "INT64", [-1, 2])],
    )
    (repo / "p").mkdir()
    (repo / "p" / "model.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    return repo


def two_steps(second: dict[str, Any], outputs: dict[str, str] | None = None) -> dict[str, Any]:
    first = {"name": "first", "model": "add-one", "inputs": {"x": "x"}}
    return {"pipeline": {"steps": [first, second], "outputs": outputs or {"out": "second.y"}}}


LOAD_ERRORS = [
    pytest.param(
        two_steps({"name": "second", "model": "nope", "inputs": {"x": "first.y"}}),
        "pipeline step 'second': model 'nope' is not known; known models: ['add-one', 'p', "
        "'pair', 'stream', 'to-int', 'wide']",
        id="unknown-model",
    ),
    pytest.param(
        two_steps(
            {"name": "second", "model": "add-one", "version": "7", "inputs": {"x": "first.y"}}
        ),
        "pipeline step 'second': model 'add-one' has no version '7'; serving ['1']",
        id="unknown-version",
    ),
    pytest.param(
        two_steps({"name": "second", "model": "add-one", "inputs": {"q": "first.y"}}),
        "pipeline step 'second': model 'add-one' has no input 'q'; its inputs are ['x']",
        id="unknown-step-input",
    ),
    pytest.param(
        two_steps({"name": "second", "model": "pair", "inputs": {"a": "first.y"}}),
        "pipeline step 'second': input 'b' of model 'pair' is not given (inputs: {b: <source>})",
        id="input-not-given",
    ),
    pytest.param(
        two_steps({"name": "second", "model": "stream", "inputs": {"x": "first.y"}}),
        "pipeline step 'second': model 'stream' streams its outputs; a step answers once",
        id="streaming-step",
    ),
    pytest.param(
        two_steps({"name": "second", "model": "add-one", "inputs": {"x": "first.nope"}}),
        "pipeline step 'second' input 'x' reads 'first.nope': step 'first' has no output "
        "'nope'; its outputs are ['y']",
        id="unknown-output",
    ),
    pytest.param(
        two_steps({"name": "second", "model": "wide", "inputs": {"x": "first.y"}}),
        "pipeline step 'second' input 'x' (FP32 [-1, 3]) reads 'first.y' (FP32 [-1, 2]): "
        "shapes differ",
        id="shape-mismatch",
    ),
    pytest.param(
        two_steps(
            {"name": "second", "model": "add-one", "inputs": {"x": "third.n"}},
            {"out": "second.y"},
        )
        | {
            "pipeline": {
                "steps": [
                    {"name": "first", "model": "add-one", "inputs": {"x": "x"}},
                    {"name": "third", "model": "to-int", "inputs": {"y": "first.y"}},
                    {"name": "second", "model": "add-one", "inputs": {"x": "third.n"}},
                ],
                "outputs": {"out": "second.y"},
            }
        },
        "pipeline step 'second' input 'x' (FP32 [-1, 2]) reads 'third.n' (INT64 [-1, 2]): "
        "datatypes differ",
        id="datatype-mismatch",
    ),
    pytest.param(
        two_steps(
            {"name": "second", "model": "add-one", "inputs": {"x": "first.y"}}, {"out": "second.z"}
        ),
        "pipeline output 'out' reads 'second.z': step 'second' has no output 'z'",
        id="unknown-pipeline-output",
    ),
    pytest.param(
        {
            "inputs": [tensor("x", "FP32", [-1, 2])],
            "outputs": [tensor("out", "FP64", [-1, 2])],
            **two_steps({"name": "second", "model": "add-one", "inputs": {"x": "first.y"}}),
        },
        "output 'out' is declared FP64 [-1, 2]; its step gives FP32 [-1, 2]",
        id="declared-output-mismatch",
    ),
    pytest.param(
        {
            "inputs": [tensor("x", "FP32", [-1, 2]), tensor("extra", "FP32", [-1, 2])],
            **two_steps({"name": "second", "model": "add-one", "inputs": {"x": "first.y"}}),
        },
        "declared input 'extra' is read by no pipeline step",
        id="unread-input",
    ),
]


@pytest.mark.parametrize(("pipeline", "message"), LOAD_ERRORS)
async def test_a_mistake_is_refused_at_load_naming_the_step(
    tmp_path: Path, node_factory: NodeFactory, pipeline: dict[str, Any], message: str
) -> None:
    node = node_factory(repo_with(tmp_path, pipeline))
    await node.start()
    index = {(r["name"], r["version"]): r for r in node.control.repository_index(full=True)}
    failed = index[("p", "1")]
    assert failed["state"] == "FAILED"
    assert failed["reason"] == f"model 'p' version '1': {message}"
    assert index[("add-one", "1")]["state"] == "READY"  # the steps serve on


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        pytest.param(
            {
                "pipeline": {
                    "steps": [
                        {"name": "a", "model": "add-one", "inputs": {"x": "b.y"}},
                        {"name": "b", "model": "add-one", "inputs": {"x": "a.y"}},
                    ],
                    "outputs": {"out": "b.y"},
                }
            },
            "pipeline steps form a cycle: 'a' reads 'b' reads 'a'",
            id="cycle",
        ),
        pytest.param(
            two_steps({"name": "second", "model": "add-one", "inputs": {"x": "frist.y"}}),
            "pipeline step 'second' input 'x' reads 'frist.y': the pipeline has no step 'frist'; "
            "its steps are ['first', 'second']",
            id="unknown-step",
        ),
        pytest.param(
            two_steps({"name": "first", "model": "add-one", "inputs": {"x": "x"}}),
            "pipeline step 'first' is named twice (give 'name:')",
            id="named-twice",
        ),
        pytest.param(
            {
                "runtime": "python",
                **two_steps({"name": "s", "model": "add-one", "inputs": {"x": "x"}}),
            },
            "a pipeline has no runtime of its own (its steps have theirs)",
            id="runtime",
        ),
        pytest.param(
            {
                "inputs": [tensor("IN", "FP32", [-1, 2])],
                "outputs": [tensor("OUT", "FP32", [-1, 2])],
                "ensemble_scheduling": {
                    "step": [
                        {
                            "model_name": "add-one",
                            "input_map": {"x": "IN"},
                            "output_map": {"y": "mid"},
                        }
                    ]
                },
            },
            "ensemble_scheduling: output 'OUT' is produced by no step; the steps produce ['mid']",
            id="ensemble-output",
        ),
    ],
)
def test_a_broken_graph_is_refused_when_model_yaml_is_read(
    tmp_path: Path, pipeline: dict[str, Any], message: str
) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False))
    with pytest.raises(ConfigError) as refused:
        read_model_config(path, "p/model.yaml")
    assert refused.value.message == f"p/model.yaml: {message}"


async def test_triton_ensemble_scheduling_serves_as_a_pipeline(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    ensemble = {
        "max_batch_size": 8,
        "inputs": [tensor("IN", "FP32", [-1, 2])],
        "outputs": [tensor("OUT", "INT64", [-1, 2])],
        "ensemble_scheduling": {
            "step": [
                {
                    "model_name": "to-int",
                    "model_version": 1,
                    "input_map": {"y": "plus_two"},
                    "output_map": {"n": "OUT"},
                },
                {
                    "model_name": "add-one",
                    "model_version": -1,
                    "input_map": {"x": "IN"},
                    "output_map": {"y": "plus_one"},
                },
                {
                    "model_name": "add-one",
                    "input_map": {"x": "plus_one"},
                    "output_map": {"y": "plus_two"},
                },
            ]
        },
    }
    repo = repo_with(tmp_path, ensemble)
    (repo / "p" / "1").mkdir()  # Triton's layout: an empty version folder
    node = node_factory(repo)
    await node.start()
    array = np.array([[0.5, 1.5]], dtype=np.float32)
    response = await node.service.infer(InferRequest("p", [Tensor("IN", "FP32", array)]))
    assert response.outputs[0].name == "OUT"
    assert response.outputs[0].data.tolist() == [[2, 3]]
    (stats,) = node.catalog.model_stats("p")["model_stats"]
    assert list(stats["pipeline"]["steps"]) == ["add-one", "add-one_2", "to-int"]
    assert node.catalog.model_config("p")["max_batch_size"] == 8


async def test_max_batch_size_above_a_step_is_refused(
    tmp_path: Path, node_factory: NodeFactory
) -> None:
    pipeline = {
        "max_batch_size": 64,
        **two_steps({"name": "second", "model": "add-one", "inputs": {"x": "first.y"}}),
    }
    node = node_factory(repo_with(tmp_path, pipeline))
    await node.start()
    (failed,) = [r for r in node.control.repository_index(full=True) if r["name"] == "p"]
    assert failed["reason"].endswith("max_batch_size 64 is more than the steps take (at most 32)")


def test_a_pipeline_version_folder_holds_nothing(tmp_path: Path) -> None:
    from inferd.core.store.repository import Repository

    repo = repo_with(
        tmp_path, two_steps({"name": "second", "model": "add-one", "inputs": {"x": "first.y"}})
    )
    (repo / "p" / "1").mkdir()
    (repo / "p" / "1" / "model.onnx").write_bytes(b"")
    with pytest.raises(
        ConfigError, match=r"^models/p/1: a pipeline's version folder holds nothing"
    ):
        Repository(repo).read("p")

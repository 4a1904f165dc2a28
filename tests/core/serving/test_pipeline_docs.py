"""docs/pipelines.md as written: its model.yaml blocks are what `inferd example --text`
builds and what Triton's form reads into (both served in tests/text/test_pipeline.py)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from inferd.core.serving.pipeline_spec import PipelineConfig
from inferd.core.store.model_config import ModelConfig
from inferd.text.build import PIPELINE_YAML

DOC = Path(__file__).parents[3] / "docs" / "pipelines.md"
FENCE = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def yaml_blocks() -> list[str]:
    return FENCE.findall(DOC.read_text())


def by_model(pipeline: PipelineConfig) -> list[tuple[str, dict[str, str]]]:
    """Each step's model and its sources, with step names replaced by their models."""
    models = {s.step_name: s.model for s in pipeline.steps}

    def plain(source: str) -> str:
        step, dot, tensor = source.partition(".")
        return f"{models[step]}.{tensor}" if dot and step in models else source

    return [(s.model, {k: plain(v) for k, v in s.inputs.items()}) for s in pipeline.steps]


def test_the_pipeline_block_is_what_the_example_builds() -> None:
    assert yaml_blocks()[0] == PIPELINE_YAML


def test_the_ensemble_block_reads_into_the_same_steps() -> None:
    pipeline, ensemble = (ModelConfig.model_validate(yaml.safe_load(b)) for b in yaml_blocks())
    assert pipeline.pipeline is not None and ensemble.pipeline is not None
    assert by_model(ensemble.pipeline) == by_model(pipeline.pipeline)
    assert ensemble.pipeline.outputs == {"embedding": "minilm-pooling.embedding"}

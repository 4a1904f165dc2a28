"""``pipeline:`` in model.yaml: a model composed of steps, each an ordinary served model.

What can be checked without the served models is checked here, when model.yaml is read:
the step graph (unknown steps, cycles), the sources of step inputs and of the pipeline's
outputs, and Triton's ``ensemble_scheduling`` form, which is turned into the same steps.
What needs the served models (their tensors, datatypes and shapes) is checked when the
pipeline loads (:mod:`inferd.core.serving.pipeline_load`).

A source names where a tensor comes from: ``<step>.<output>`` (an output of a step) or the
name of one of the pipeline's inputs. Steps may be listed in any order; they run in the
order their sources need, steps that need nothing of each other at the same time.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Final

from pydantic import BaseModel, Field, field_validator

from inferd.errors import ConfigError

#: What a step may be called: it prefixes sources (``<step>.<output>``), so no dots.
STEP_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
#: What a step's model may be called (a model folder's name, see repository.check_name).
MODEL_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class _Strict(BaseModel):
    model_config = {"extra": "forbid"}


class StepConfig(_Strict):
    """One step: a served model, and where each of its inputs comes from."""

    name: str | None = Field(
        None, description="How sources and messages name the step; default: its model's name."
    )
    model: str = Field(description="A model of the repository (not a streaming one).")
    version: str | None = Field(
        None, description="A version or a label of the model; default: its latest version."
    )
    inputs: dict[str, str] = Field(
        description="The model's input -> a source (a pipeline input or '<step>.<output>')."
    )

    @field_validator("version", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        return str(value) if type(value) is int else value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not MODEL_NAME.match(value) or ".." in value:
            raise ValueError(f"{value!r} is not a model name")
        return value

    @property
    def step_name(self) -> str:
        return self.name or self.model


class PipelineConfig(_Strict):
    steps: list[StepConfig] = Field(min_length=1)
    outputs: dict[str, str] = Field(
        min_length=1, description="The pipeline's output -> a source ('<step>.<output>')."
    )


class EnsembleStep(_Strict):
    """One step of Triton's ``ensemble_scheduling`` (its config.pbtxt fields, as YAML)."""

    model_name: str
    model_version: int = Field(-1, ge=-1, description="-1: the latest version.")
    #: The model's input -> an ensemble tensor.
    input_map: dict[str, str] = Field(default_factory=dict)
    #: The model's output -> an ensemble tensor.
    output_map: dict[str, str] = Field(default_factory=dict)


class EnsembleScheduling(_Strict):
    step: list[EnsembleStep] = Field(min_length=1)


def from_ensemble(
    ensemble: EnsembleScheduling, inputs: list[str], outputs: list[str]
) -> PipelineConfig:
    """Triton's form: tensors are named once for the whole ensemble; a step's
    ``output_map`` names what it produces and its ``input_map`` what it reads (an ensemble
    input or another step's tensor). Steps are named after their model (``_2``, ``_3``...
    when a model is used again)."""
    names: list[str] = []
    produced: dict[str, str] = {}
    for step in ensemble.step:
        count = sum(1 for m in ensemble.step[: len(names)] if m.model_name == step.model_name)
        name = step.model_name if count == 0 else f"{step.model_name}_{count + 1}"
        names.append(name)
        for output, tensor in step.output_map.items():
            if tensor in produced or tensor in inputs:
                raise ConfigError(
                    f"ensemble_scheduling: tensor '{tensor}' is produced twice (by step "
                    f"'{name}' and {('step ' + repr(produced[tensor])) if tensor in produced else 'the inputs'})"
                )
            produced[tensor] = f"{name}.{output}"
    steps = []
    for name, step in zip(names, ensemble.step, strict=True):
        sources = {}
        for model_input, tensor in step.input_map.items():
            if tensor in inputs:
                sources[model_input] = tensor
            elif tensor in produced:
                sources[model_input] = produced[tensor]
            else:
                raise ConfigError(
                    f"ensemble_scheduling: step '{name}' reads tensor '{tensor}', which is "
                    f"neither an input of the ensemble {inputs} nor produced by a step"
                )
        version = None if step.model_version < 0 else str(step.model_version)
        steps.append(StepConfig(name=name, model=step.model_name, version=version, inputs=sources))
    missing = [o for o in outputs if o not in produced]
    if missing:
        raise ConfigError(
            f"ensemble_scheduling: output '{missing[0]}' is produced by no step; the steps "
            f"produce {sorted(produced)}"
        )
    return PipelineConfig(steps=steps, outputs={o: produced[o] for o in outputs})


@dataclasses.dataclass(frozen=True, slots=True)
class Graph:
    """A pipeline's steps in the order they run: levels of steps that need nothing of
    each other, and every source resolved."""

    #: Step names, level by level.
    levels: tuple[tuple[str, ...], ...]
    #: The pipeline's inputs in the order first met (sources that name no step).
    inputs: tuple[str, ...]


def split_source(source: str, steps: set[str], declared: set[str]) -> tuple[str | None, str]:
    """(step, output) for ``<step>.<output>``, (None, input) for a pipeline input."""
    if source in declared:
        return None, source
    step, dot, tensor = source.partition(".")
    if dot and tensor:
        return step, tensor
    return None, source


def graph(config: PipelineConfig, declared_inputs: list[str] | None, where: str = "") -> Graph:
    """Check the step graph and order it; messages name the step (or output) at fault and
    start with ``where``."""
    where = f"{where}: " if where else ""
    by_name: dict[str, StepConfig] = {}
    for step in config.steps:
        name = step.step_name
        if not STEP_NAME.match(name):
            raise ConfigError(
                f"{where}pipeline step name {name!r}: letters, digits, '_' and '-' only "
                "(name the step with 'name:' when its model's name has a dot)"
            )
        if name in by_name:
            raise ConfigError(f"{where}pipeline step '{name}' is named twice (give 'name:')")
        by_name[name] = step
    declared = set(declared_inputs or ())
    needs: dict[str, set[str]] = {}
    inputs: list[str] = []

    def check(source: str, user: str) -> str | None:
        step, tensor = split_source(source, set(by_name), declared)
        if step is not None:
            if step not in by_name:
                raise ConfigError(
                    f"{where}{user} reads '{source}': the pipeline has no step '{step}'; "
                    f"its steps are {list(by_name)}"
                )
            return step
        if declared_inputs is not None and tensor not in declared:
            raise ConfigError(
                f"{where}{user} reads '{source}', which is neither a declared input "
                f"{declared_inputs} nor '<step>.<output>'"
            )
        if tensor not in inputs:
            inputs.append(tensor)
        return None

    for name, step in by_name.items():
        if not step.inputs:
            raise ConfigError(f"{where}pipeline step '{name}' reads no input")
        needs[name] = set()
        for model_input, source in step.inputs.items():
            producer = check(source, f"pipeline step '{name}' input '{model_input}'")
            if producer == name:
                raise ConfigError(f"{where}pipeline step '{name}' reads its own output '{source}'")
            if producer is not None:
                needs[name].add(producer)
    for output, source in config.outputs.items():
        if check(source, f"pipeline output '{output}'") is None:
            raise ConfigError(
                f"{where}pipeline output '{output}' reads '{source}'; an output comes from "
                "a step ('<step>.<output>')"
            )
    return Graph(_levels(needs, where), tuple(inputs))


def _levels(needs: dict[str, set[str]], where: str) -> tuple[tuple[str, ...], ...]:
    """Steps grouped by the longest chain of steps before them; a cycle is an error that
    names its steps."""
    levels: list[tuple[str, ...]] = []
    done: set[str] = set()
    while len(done) < len(needs):
        ready = tuple(s for s in needs if s not in done and needs[s] <= done)
        if not ready:
            raise ConfigError(f"{where}pipeline steps form a cycle: {_cycle(needs, done)}")
        levels.append(ready)
        done.update(ready)
    return tuple(levels)


def _cycle(needs: dict[str, set[str]], done: set[str]) -> str:
    """One cycle among the steps not done, as "'a' reads 'b' reads 'a'"."""
    start = next(s for s in needs if s not in done)
    path = [start]
    while True:
        following = sorted(n for n in needs[path[-1]] if n not in done)[0]
        if following in path:
            cycle = [*path[path.index(following) :], following]
            return " reads ".join(f"'{s}'" for s in cycle)
        path.append(following)


def pipeline_versions(folder: Path, shown: str) -> list[str]:
    """A pipeline's version names: its version folders, which hold nothing (Triton's
    layout); "1" when it has none."""
    names = []
    for child in sorted(folder.iterdir()):
        if not child.is_dir() or not MODEL_NAME.match(child.name):
            continue
        if any(not p.name.startswith(".") for p in child.iterdir()):
            raise ConfigError(
                f"{shown}/{child.name}: a pipeline's version folder holds nothing (its "
                "steps are models of their own)"
            )
        names.append(child.name)
    return names or ["1"]

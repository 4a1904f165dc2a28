"""Loading a pipeline version: its steps checked against the served models, its own
inputs and outputs derived from theirs, and a :class:`PipelineRunner` as its batcher.

Checked at load, each message naming the step: every step's model is served and does not
stream; every input of a step's model is given, from a pipeline input or an output the
named step's model has; producer and consumer agree on datatype and shape (a dimension
of -1 matches any); declared pipeline inputs and outputs agree with what the steps take
and give. The pipeline batches when every step's model does; its ``max_batch_size`` is at
most the smallest of theirs. Step models load before the pipelines that use them
(:func:`load_waves`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from inferd.core.serving.pipeline import PipelineRunner, Step
from inferd.core.serving.pipeline_spec import PipelineConfig, graph, split_source
from inferd.core.serving.stats import VersionStats
from inferd.core.store.loaded import LoadedVersion
from inferd.core.store.model_config import ModelConfig
from inferd.core.store.repository import ModelEntry, Repository, VersionEntry
from inferd.core.store.versions import version_settings
from inferd.errors import ConfigError, InferdError, InternalError
from inferd.metrics import Metrics
from inferd.runtimes.base import Arrays, Runtime, RuntimeOptions
from inferd.serving_metrics import StepSeries
from inferd.settings import ModelLimits, PerformanceSettings
from inferd.types import DATATYPE_TO_NUMPY, TensorSpec

#: The manager's ``resolve``: the version of a model that serves now (the latest for None).
Resolver = Callable[[str, "str | None"], LoadedVersion]


class NoArtifact(Runtime):
    """A pipeline's runtime: there is no artifact to run; its steps run (the runner)."""

    def load(self) -> None:
        pass

    def infer(self, inputs: Arrays) -> Arrays:
        raise InternalError(f"model '{self.model_name}' is a pipeline: its steps run, not it")


def load_waves(repository: Repository, names: list[str]) -> list[list[str]]:
    """The model names in groups to load one after the other: models that are not
    pipelines first, then each pipeline after the models its steps name (a model whose
    model.yaml cannot be read goes first: its load reports why)."""
    steps: dict[str, set[str]] = {}
    for name in names:
        try:
            pipeline = repository.read(name).config.pipeline
        except InferdError:
            pipeline = None
        if pipeline is not None:
            steps[name] = {s.model for s in pipeline.steps} & set(names)
    waves = [[n for n in names if n not in steps]]
    done = set(waves[0])
    while len(done) < len(names):
        wave = [n for n in names if n not in done and steps[n] <= done]
        if not wave:  # pipelines that use each other: each load reports the step it lacks
            wave = [n for n in names if n not in done]
        waves.append(wave)
        done.update(wave)
    return [wave for wave in waves if wave]


def _shape_agrees(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b, strict=True))


def _describe(spec: TensorSpec) -> str:
    return f"{spec.datatype} {list(spec.shape)}"


class _Checker:
    """Walks the steps in order, resolving each source's spec."""

    def __init__(self, config: PipelineConfig, resolve: Resolver, where: str) -> None:
        self.where = where
        self._resolve = resolve
        self.config = config
        self.specs: dict[str, TensorSpec] = {}  # source -> spec
        self.steps: dict[str, LoadedVersion] = {}

    def resolve(self, model: str, version: str | None) -> LoadedVersion:
        return resolve_step(self._resolve, model, version)

    def step(self, name: str, declared: dict[str, TensorSpec] | None) -> LoadedVersion:
        step = next(s for s in self.config.steps if s.step_name == name)
        at = f"{self.where}: pipeline step '{name}'"
        try:
            loaded = self.resolve(step.model, step.version)
        except InferdError as exc:
            raise ConfigError(f"{at}: {exc.message}") from None
        if loaded.generator is not None:
            raise ConfigError(
                f"{at}: model '{step.model}' streams its outputs; a step answers once"
            )
        takes = {spec.name: spec for spec in loaded.inputs}
        for model_input, source in step.inputs.items():
            wanted = takes.get(model_input)
            if wanted is None:
                raise ConfigError(
                    f"{at}: model '{step.model}' has no input '{model_input}'; its inputs "
                    f"are {list(takes)}"
                )
            self._feed(at, model_input, wanted, source, declared)
        missing = [n for n in takes if n not in step.inputs]
        if missing:
            raise ConfigError(
                f"{at}: input '{missing[0]}' of model '{step.model}' is not given "
                f"(inputs: {{{missing[0]}: <source>}})"
            )
        for spec in loaded.outputs:
            self.specs[f"{name}.{spec.name}"] = spec
        self.steps[name] = loaded
        return loaded

    def _feed(
        self,
        at: str,
        model_input: str,
        wanted: TensorSpec,
        source: str,
        declared: dict[str, TensorSpec] | None,
    ) -> None:
        step, tensor = split_source(source, set(self.steps), set(declared or ()))
        given = self.specs.get(source)
        if given is None and step is not None:
            outputs = [n.partition(".")[2] for n in self.specs if n.startswith(f"{step}.")]
            raise ConfigError(
                f"{at} input '{model_input}' reads '{source}': step '{step}' has no output "
                f"'{tensor}'; its outputs are {outputs}"
            )
        if given is None:  # a pipeline input met first here: it takes this input's spec
            self.specs[source] = dataclasses.replace(wanted, name=source)
            return
        if given.datatype != wanted.datatype or not _shape_agrees(given.shape, wanted.shape):
            raise ConfigError(
                f"{at} input '{model_input}' ({_describe(wanted)}) reads '{source}' "
                f"({_describe(given)}): {'datatypes' if given.datatype != wanted.datatype else 'shapes'} differ"
            )


def resolve_step(resolve: Resolver, model: str, version: str | None) -> LoadedVersion:
    """The version a step names (a version or one of the model's labels; else the latest)."""
    if version:
        version = resolve(model, None).config.labels.get(version, version)
    return resolve(model, version)


def load_pipeline(
    resolve: Resolver,
    entry: ModelEntry,
    version: VersionEntry,
    where: str,
    *,
    performance: PerformanceSettings,
    limits: ModelLimits,
    metrics: Metrics | None,
) -> LoadedVersion:
    """Check the pipeline against the served models and build its version (the
    loader's ``build`` for a model.yaml with ``pipeline:``)."""
    config = entry.config
    assert config.pipeline is not None
    declared = (
        None
        if config.inputs is None
        else {t.name: t.spec(config.allow_nonfinite) for t in config.inputs}
    )
    order = graph(config.pipeline, None if declared is None else list(declared), where)
    checker = _Checker(config.pipeline, resolve, where)
    if declared is not None:
        checker.specs.update(declared)
    for level in order.levels:
        for name in level:
            checker.step(name, declared)
    read = {source for step in config.pipeline.steps for source in step.inputs.values()}
    unread = [name for name in declared or () if name not in read]
    if unread:
        raise ConfigError(f"{where}: declared input '{unread[0]}' is read by no pipeline step")
    inputs = tuple(
        dataclasses.replace(checker.specs[name], allow_nonfinite=config.allow_nonfinite)
        for name in (list(declared) if declared is not None else order.inputs)
    )
    outputs = _outputs(config, checker, where)
    settings = version_settings(config, inputs, performance, limits, where)
    steps_batch = [loaded.settings.max_batch_size for loaded in checker.steps.values()]
    most = min(steps_batch) if all(steps_batch) else 0
    if config.max_batch_size is not None and config.max_batch_size > most:
        raise ConfigError(
            f"{where}: max_batch_size {config.max_batch_size} is more than the steps take "
            f"(at most {most})"
        )
    max_batch = (config.max_batch_size or most) if settings.batching else 0
    settings = dataclasses.replace(settings, max_batch_size=max_batch)
    runner = PipelineRunner(
        entry.name,
        _steps(config.pipeline, order.levels, checker, metrics, entry.name, version.name),
        config.pipeline.outputs,
        lambda model, step_version: resolve_step(resolve, model, step_version),
    )
    stats = VersionStats(entry.name, version.name)
    stats.sections["pipeline"] = runner.stats
    runtime = NoArtifact(
        RuntimeOptions(artifact=version.artifact, model=entry.name, version=version.name)
    )
    return LoadedVersion(
        entry.name,
        version.name,
        "pipeline",
        config,
        settings,
        inputs,
        outputs,
        runtime,
        runner,
        stats,
    )


def _outputs(config: ModelConfig, checker: _Checker, where: str) -> tuple[TensorSpec, ...]:
    assert config.pipeline is not None
    mapping = config.pipeline.outputs
    produced = {
        output: dataclasses.replace(checker.specs[source], name=output)
        for output, source in mapping.items()
        if source in checker.specs
    }
    for output, source in mapping.items():
        if output not in produced:
            step, _, tensor = source.partition(".")
            raise ConfigError(
                f"{where}: pipeline output '{output}' reads '{source}': step '{step}' has no "
                f"output '{tensor}'"
            )
    if config.outputs is None:
        return tuple(produced.values())
    declared = {t.name: t.spec(config.allow_nonfinite) for t in config.outputs}
    if set(declared) != set(produced):
        raise ConfigError(
            f"{where}: the declared outputs {list(declared)} are not the pipeline's outputs "
            f"{list(produced)}"
        )
    for name, spec in declared.items():
        got = produced[name]
        if spec.datatype != got.datatype or not _shape_agrees(spec.shape, got.shape):
            raise ConfigError(
                f"{where}: output '{name}' is declared {_describe(spec)}; its step gives "
                f"{_describe(got)}"
            )
    return tuple(declared.values())


def _steps(
    pipeline: PipelineConfig,
    levels: tuple[tuple[str, ...], ...],
    checker: _Checker,
    metrics: Metrics | None,
    model: str,
    version: str,
) -> tuple[tuple[Step, ...], ...]:
    """The runner's steps; each keeps the outputs that are read later."""
    read = {s for step in pipeline.steps for s in step.inputs.values()}
    read |= set(pipeline.outputs.values())
    by_name = {s.step_name: s for s in pipeline.steps}
    built = []
    for level in levels:
        row = []
        for name in level:
            config, loaded = by_name[name], checker.steps[name]
            takes = {spec.name: spec for spec in loaded.inputs}
            row.append(
                Step(
                    name,
                    config.model,
                    config.version,
                    tuple(
                        (i, source, DATATYPE_TO_NUMPY[takes[i].datatype])
                        for i, source in config.inputs.items()
                    ),
                    tuple(o.name for o in loaded.outputs if f"{name}.{o.name}" in read),
                    None if metrics is None else StepSeries(metrics.serving, model, version, name),
                )
            )
        built.append(tuple(row))
    return tuple(built)

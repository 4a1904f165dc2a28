"""The settings object of every section, and how it is built: overrides (CLI flags) >
environment (``INFERENCE_`` prefix, ``__`` for nesting, plus the flat names in
:data:`FLAT_ENV`) > a YAML file > defaults, recording where each value came from."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from inferd import settings_sources as sources
from inferd import yamltext
from inferd.errors import ConfigError
from inferd.settings.limits import LimitsSettings, SharedMemorySettings, StreamSettings
from inferd.settings.models import ModelsSettings, PerformanceSettings, RoutingSettings
from inferd.settings.safeguards import SafeguardsSettings, StorageSettings
from inferd.settings.server import ServerSettings

ENV_PREFIX: Final = "INFERENCE_"

#: Flat environment names -> (section, field). Kept for deployments that predate sections.
FLAT_ENV: Final[dict[str, tuple[str, ...]]] = {
    "INFERENCE_HOST": ("server", "host"),
    "INFERENCE_PORT": ("server", "port"),
    "INFERENCE_GRPC_PORT": ("server", "grpc_port"),
    "INFERENCE_WORKERS": ("server", "workers"),
    "INFERENCE_MODEL_PATH": ("models", "repository"),
    "INFERENCE_MODEL_NAME": ("models", "default_model"),
    "INFERENCE_MODEL_VERSION": ("models", "default_version"),
    "INFERENCE_MAX_BATCH_SIZE": ("performance", "max_batch_size"),
    "INFERENCE_TIMEOUT_SECONDS": ("performance", "inference_timeout_s"),
    "INFERENCE_MAX_REQUEST_SIZE_MB": ("safeguards", "max_request_size_mb"),
    "INFERENCE_RATE_LIMIT_PER_MINUTE": ("safeguards", "rate_limit", "requests_per_minute"),
}

#: YAML section names accepted as synonyms of the settings sections.
YAML_SECTION_ALIASES: Final[dict[str, str]] = {"model": "models"}


class Settings(BaseSettings):
    """All of inferd's settings. Build with :func:`load_settings`, which reads the
    environment; constructing this class reads nothing but its arguments."""

    model_config = SettingsConfigDict(extra="forbid")

    server: ServerSettings = Field(default_factory=ServerSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    performance: PerformanceSettings = Field(default_factory=PerformanceSettings)
    safeguards: SafeguardsSettings = Field(default_factory=SafeguardsSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    shared_memory: SharedMemorySettings = Field(default_factory=SharedMemorySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings layers the sources itself, so that it knows where each value came from.
        return (init_settings,)


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedSettings:
    """The settings and, per leaf path, where its value came from (``default`` if unset)."""

    settings: Settings
    sources: dict[tuple[str, ...], str]

    def source(self, path: tuple[str, ...]) -> str:
        return self.sources.get(path, sources.DEFAULT_SOURCE)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yamltext.load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: {yaml_problem(exc)}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections")
    data: dict[str, Any] = {}
    for key, value in loaded.items():
        name = YAML_SECTION_ALIASES.get(str(key), str(key))
        if name in data:
            raise ConfigError(f"config file {path}: section {name!r} is given twice ({key!r})")
        data[name] = value
    sources.check_keys(Settings, data, f"config file {path}")
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where a YAML document is broken, without quoting any of it."""
    return yamltext.problem(exc)


def explain_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    override_names: Mapping[tuple[str, ...], str] | None = None,
) -> LoadedSettings:
    """Build the settings from overrides > environment > YAML > defaults, and record
    where each value came from. ``override_names`` names the flag behind an override.

    Raises :class:`ConfigError` naming the field, and the variable, flag or file that
    gave it, when a value is invalid or a key or variable names no setting.
    """
    env = os.environ if environ is None else environ
    yaml_data = _read_yaml(config_file) if config_file else {}
    env_data, origin, names = sources.env_layer(Settings, env, ENV_PREFIX, FLAT_ENV)
    overrides = overrides or {}
    sources.check_keys(Settings, overrides, "overrides")
    where: dict[tuple[str, ...], str] = {}
    for leaf in sources.leaves(Settings, yaml_data):
        where[leaf] = f"file {config_file}"
    where.update(origin)
    for leaf in sources.leaves(Settings, overrides):
        name = (override_names or {}).get(leaf)
        where[leaf] = (
            ("flag " if name.startswith("-") else "argument ") + name if name else "override"
        )
        if name:
            names[leaf] = name
    merged = sources.merge(sources.merge(yaml_data, env_data), overrides)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(sources.describe(exc, where, names)) from exc
    return LoadedSettings(settings, where)


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    override_names: Mapping[tuple[str, ...], str] | None = None,
) -> Settings:
    """The settings from overrides > environment > YAML > defaults (see
    :func:`explain_settings`)."""
    return explain_settings(config_file, overrides, environ, override_names).settings

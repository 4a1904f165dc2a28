"""The one settings object, built at the edge and passed down.

Sources, highest first: explicit overrides (CLI flags) > environment (``INFERENCE_`` prefix,
``__`` for nesting, plus the flat names in :data:`FLAT_ENV`) > a YAML file > defaults.
Nothing else in inferd reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from inferd.errors import ConfigError

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


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for all).")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port (REST and WebSocket).")
    grpc_port: int = Field(8081, ge=0, le=65535, description="gRPC port; 0 disables gRPC.")
    workers: int = Field(1, ge=1, le=64, description="Server processes sharing the ports.")
    log_level: str = Field("info", description="debug, info, warning or error.")
    shutdown_grace_s: float = Field(
        30.0, ge=0, description="How long queued and in-flight work may run after SIGTERM."
    )
    admin_token: str | None = Field(
        None,
        description="Bearer token for the repository load/unload endpoints. "
        "When unset, those endpoints answer only to loopback clients.",
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("expected one of debug, info, warning, error")
        return value.lower()


class ModelsSettings(_Section):
    repository: Path | None = Field(
        None, description="Model repository folder, or a single model file."
    )
    default_model: str | None = Field(
        None, description="Model used by /predict; the only model when there is one."
    )
    default_version: str | None = Field(
        None, description="Version (or label) used by /predict when a request names none."
    )


class PerformanceSettings(_Section):
    max_batch_size: int = Field(
        32, ge=0, description="Default max rows per batch for models that batch."
    )
    batch_timeout_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="Default max queue delay: how long the oldest request may wait for a "
        "batch to fill. 0 batches whatever is queued when an instance is free.",
    )
    max_queue_size: int = Field(
        256, ge=1, description="Requests waiting per model version before new ones get 429."
    )
    inference_timeout_s: float = Field(
        30.0, gt=0, description="Default request deadline; past it the answer is 504."
    )
    intra_op_threads: int = Field(
        1, ge=0, description="Threads a runtime may use inside one operator (0 = framework's)."
    )
    gil_switch_interval_us: float = Field(
        200.0,
        gt=0,
        le=100_000,
        description="How long the event loop may hold the GIL while a model thread waits "
        "for it (Python's default is 5000). A model thread needs the GIL for a moment "
        "around each runtime call; a short interval keeps it from idling behind request "
        "decoding. Raise it for models written in pure Python.",
    )


class RateLimitSettings(_Section):
    enabled: bool = Field(False, description="Limit requests per client address.")
    requests_per_minute: int = Field(600, ge=1, description="Sustained rate per client.")
    burst: int | None = Field(None, ge=1, description="Bucket size; defaults to a second's worth.")


class InputValidationSettings(_Section):
    enabled: bool = Field(True, description="Check inputs against the model's declaration.")
    max_sequence_length: int = Field(
        1_000_000, ge=1, description="Most elements one input may hold per batch row."
    )


class SafeguardsSettings(_Section):
    max_request_size_mb: float = Field(
        16.0, gt=0, description="Largest request body (REST, WebSocket frame, gRPC message)."
    )
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    input_validation: InputValidationSettings = Field(default_factory=InputValidationSettings)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_size_mb * 1024 * 1024)


class StreamSettings(_Section):
    idle_timeout_s: float = Field(
        60.0,
        gt=0,
        description="A WebSocket stream with no message and no answer pending "
        "for this long is closed (code 1000).",
    )
    max_messages_per_second: float = Field(
        100.0,
        gt=0,
        description="Sustained message rate per WebSocket connection (a burst "
        "of a second's worth is allowed); past it the stream is closed (code 1008).",
    )
    max_in_flight: int = Field(
        16,
        ge=1,
        description="Messages of one stream being served at once; the stream "
        "stops reading while this many answers are pending.",
    )


class Settings(BaseSettings):
    """All of inferd's settings. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore"
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    performance: PerformanceSettings = Field(default_factory=PerformanceSettings)
    safeguards: SafeguardsSettings = Field(default_factory=SafeguardsSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)


class _DictSource(PydanticBaseSettingsSource):
    """A settings source over a ready nested dict (the YAML file, the flat env names)."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


def _nest(path: tuple[str, ...], value: Any, into: dict[str, Any]) -> None:
    node = into
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def _flat_env(environ: Mapping[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, path in FLAT_ENV.items():
        if name in environ:
            _nest(path, environ[name], data)
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections")
    return {YAML_SECTION_ALIASES.get(str(key), str(key)): value for key, value in loaded.items()}


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        parts.append(f"{field}: {error['msg']} (got {error.get('input')!r})")
    return "invalid settings: " + "; ".join(parts)


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from overrides > environment > YAML > defaults.

    Raises :class:`ConfigError` naming the field when a value is invalid.
    """
    env = os.environ if environ is None else environ
    yaml_data = _read_yaml(config_file) if config_file else {}
    flat = _flat_env(env)

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            from pydantic_settings import EnvSettingsSource

            nested_env = EnvSettingsSource(
                settings_cls,
                env_prefix=ENV_PREFIX,
                env_nested_delimiter="__",
                case_sensitive=False,
            )
            nested_env.env_vars = {k.lower(): v for k, v in env.items() if v is not None}
            return (
                init_settings,
                nested_env,
                _DictSource(settings_cls, flat),
                _DictSource(settings_cls, yaml_data),
            )

    try:
        loaded = _Loaded(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    return Settings.model_validate(loaded.model_dump())


def set_metrics_dir(path: Path) -> None:
    """prometheus_client learns its multiprocess folder from the environment, read when it
    is imported; worker processes inherit it from the supervisor."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def metrics_dir() -> Path | None:
    """The shared metrics folder when running as one of several workers."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None

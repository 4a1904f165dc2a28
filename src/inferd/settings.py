"""The one settings object, built at the edge and passed down.

Sources, highest first: explicit overrides (CLI flags) > environment (``INFERENCE_`` prefix,
``__`` for nesting, plus the flat names in :data:`FLAT_ENV`) > a YAML file > defaults.
Unknown sections, keys and ``INFERENCE_`` variables are errors. Nothing else in inferd
reads the environment.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from inferd import settings_sources as sources
from inferd import yamltext
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
#: A browser origin: scheme://host[:port], the host a name, an IPv4 address or [IPv6].
ORIGIN: Final = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(:[0-9]{1,5})?"
)


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
        description="An admin key given in clear (kept for older deployments): it is "
        "configured as an admin key named 'admin-token'. Prefer server.api_keys.",
    )
    api_keys: list[str] = Field(
        default_factory=list,
        description="API keys as NAME:SCOPE:SHA256 lines ('inferd keys new' prints one); "
        "SCOPE is infer (inference, metadata, streams) or admin (also the control API).",
    )
    api_keys_file: Path | None = Field(
        None, description="A file of more API key lines, one a line ('#' starts a comment)."
    )
    require_api_key: bool = Field(
        False, description="Inference and metadata need a key (else they are open to all)."
    )
    metrics_require_key: bool = Field(False, description="/metrics needs a key (of any scope).")
    allow_local_admin: bool = Field(
        False,
        description="Loopback clients may use the control API without a key. Behind a proxy "
        "or sidecar on the same host every client is loopback: leave it off there.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins (https://app.example.com, or *) a browser may call from; "
        "empty: no CORS headers, and cross-origin control requests are refused.",
    )
    tls_cert_file: Path | None = Field(
        None, description="PEM certificate chain: HTTP and gRPC serve TLS with it."
    )
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle: clients must present a certificate it signed (mTLS)."
    )
    access_log: Literal["off", "plain", "json"] = Field(
        "off",
        description="One line per request on stderr (off, plain or json): method or RPC, "
        "route, model, version, status, latency, key name, request id.",
    )
    dashboard: bool = Field(
        True,
        description="Serve the live dashboard at /dashboard; its data (/dashboard/state) "
        "needs what metadata needs (an infer key when require_api_key), and shows only "
        "what the caller's scope may read. false: no dashboard routes at all.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (10.0.0.0/8, ::1) of proxies whose "
        "X-Forwarded-For names the client; from anyone else the header is ignored.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @field_validator("access_log", mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `off` as false.
        return "off" if value is False else value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("expected one of debug, info, warning, error")
        return value.lower()

    @field_validator("api_keys", "cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        """From the environment: a JSON list of strings, or entries separated by commas or
        white space."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith(("[", "{")):
            try:
                entries = json.loads(value)
            except ValueError:
                raise ValueError("not a JSON list (write entries separated by commas)") from None
            if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
                raise ValueError("expected a JSON list of strings")
            return entries
        return [part for part in value.replace(",", " ").split() if part]

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for entry in value:
            if entry != "*" and not ORIGIN.fullmatch(entry):
                raise ValueError(
                    f"{entry!r} is not an origin: expected scheme://host[:port] (no path, "
                    "no trailing '/'), or *"
                )
        return value

    @model_validator(mode="after")
    def _tls(self) -> ServerSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file are set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self


class ModelsSettings(_Section):
    repository: Path | None = Field(
        Path("models"),
        description="Model repository folder, or a single model file; relative paths are "
        "taken from the working directory.",
    )
    allow_empty: bool = Field(
        False, description="Serve a repository that holds no model (else start-up fails)."
    )
    default_model: str | None = Field(
        None, description="Model used by /predict; the only model when there is one."
    )
    default_version: str | None = Field(
        None, description="Version (or label) used by /predict when a request names none."
    )
    poll_interval_s: float = Field(
        0.0,
        ge=0,
        description="Scan the repository this often and load what changed (new or changed "
        "version folders and model.yaml, new and removed model folders); 0: never.",
    )


class RoutingSettings(_Section):
    key_header: str = Field(
        "X-Routing-Key",
        min_length=1,
        pattern=r"^[A-Za-z0-9-]+$",
        description="Header (gRPC metadata, lower-case) whose value is a request's routing "
        "key: the same key reaches the same version of a traffic split. Without it, the "
        "caller's API key name is the routing key.",
    )
    max_key_length: int = Field(
        256, ge=1, le=65536, description="Longest routing key accepted (longer: 400)."
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
    inter_op_threads: int = Field(
        1,
        ge=0,
        description="Threads a runtime may use to run independent operators at once "
        "(ONNX Runtime, TensorFlow; 0 = framework's).",
    )
    inline_max_compute_us: float = Field(
        200.0,
        ge=0,
        le=100_000,
        description="A model whose calls take less than this on average (measured as it "
        "serves) runs a request on the event loop, without the hop to a model thread, when "
        "nothing else of that version is queued or running. 0 never does; a model with a "
        "queue delay never does.",
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
    enabled: bool = Field(
        False, description="Limit requests per principal (API key name, else client address)."
    )
    requests_per_minute: int = Field(600, ge=1, description="Requests per principal per minute.")
    strategy: Literal["fixed-window", "sliding-window", "moving-window"] = Field(
        "fixed-window",
        description="How the minute is counted (the `limits` library's strategies): "
        "fixed-window (one counter per principal, the cheapest; allows up to twice the rate "
        "across a window edge), sliding-window (two counters, weighted) or moving-window "
        "(exact, one entry per request).",
    )
    per_model: bool = Field(
        False, description="A separate budget per principal and model (else one per principal)."
    )
    storage_uri: str | None = Field(
        None,
        description="Where counters live: memory:// (this process) or redis://, rediss://, "
        "unix:// (shared by every worker and replica). Unset: storage.redis_uri, else memory.",
    )
    failure_mode: Literal["open", "closed"] = Field(
        "open",
        description="When the storage does not answer within storage.timeout_ms: admit the "
        "request (open) or refuse it with 503 (closed).",
    )

    @field_validator("storage_uri")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value and value.split("://", 1)[0] not in ("memory", "redis", "rediss", "unix"):
            raise ValueError("expected memory://, redis://, rediss:// or unix://")
        return value or None


class InputValidationSettings(_Section):
    enabled: bool = Field(True, description="Check inputs against the model's declaration.")
    max_sequence_length: int = Field(
        1_000_000, ge=1, description="Most elements one input may hold per batch row."
    )


class SafeguardsSettings(_Section):
    max_request_size_mb: float = Field(
        16.0, gt=0, description="Largest request body (REST, WebSocket frame, gRPC message)."
    )
    json_offload_bytes: int = Field(
        262_144,
        ge=0,
        description="JSON bodies (REST, WebSocket messages) of this many bytes or more are "
        "parsed in a worker process, so parsing them never holds the event loop; "
        "0 parses every body on the loop.",
    )
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    input_validation: InputValidationSettings = Field(default_factory=InputValidationSettings)

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_size_mb * 1024 * 1024)


class StreamSettings(_Section):
    """Limits of every stream: WebSocket, gRPC ModelStreamInfer and PredictStream."""

    idle_timeout_s: float = Field(
        60.0,
        gt=0,
        description="A stream with no message and no answer pending for this long is "
        "closed (WebSocket code 1000, gRPC DEADLINE_EXCEEDED).",
    )
    max_messages_per_second: float = Field(
        100.0,
        gt=0,
        description="Sustained message rate per stream (a burst of a second's worth is "
        "allowed); past it the stream is closed (WebSocket code 1008, gRPC "
        "RESOURCE_EXHAUSTED).",
    )
    max_in_flight: int = Field(
        16,
        ge=1,
        description="Messages of one stream being served at once; the stream "
        "stops reading while this many answers are pending.",
    )
    max_buffered_responses: int = Field(
        8,
        ge=1,
        description="Partial responses of a streaming model buffered per request while "
        "the client has not taken them; the model's generator waits when the buffer is full.",
    )


class HttpLimits(_Section):
    """Bounds on HTTP/1.1 connections (REST and the WebSocket handshake); see README "Limits"."""

    max_header_bytes: int = Field(
        65_536,
        ge=1024,
        description="Largest request head (request line and headers), counted as it arrives; "
        "past it the answer is 431 and the connection closes.",
    )
    max_headers: int = Field(
        100, ge=1, description="Most header fields one request may carry; past it, 431 and close."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Time a client has to send a whole request head, from the connection's "
        "first byte (or its opening, for a silent one); past it, 408 and close.",
    )
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Time a client has to send a request body once its head arrived; past "
        "it, 408 and close.",
    )
    keepalive_timeout_s: float = Field(
        5.0, gt=0, description="An idle keep-alive connection is closed after this long."
    )
    max_connections: int = Field(
        4096,
        ge=1,
        description="Open HTTP and WebSocket connections per process; a connection past it "
        "gets 503 with Retry-After and is closed.",
    )


class GrpcLimits(_Section):
    """Bounds on gRPC (HTTP/2) connections and calls; see README "Limits"."""

    max_concurrent_rpcs: int = Field(
        2048,
        ge=1,
        description="Calls (streams included) open at once per process; past it, "
        "RESOURCE_EXHAUSTED.",
    )
    max_concurrent_streams: int = Field(
        4096,
        ge=1,
        description="Streams one connection may have open (HTTP/2 SETTINGS). grpc clients "
        "do not queue calls past it: the server refuses the stream and the call fails "
        "UNAVAILABLE, so keep it above max_concurrent_rpcs unless that is wanted.",
    )
    min_ping_interval_s: float = Field(
        10.0,
        ge=0,
        description="Shortest interval between client pings the server accepts; a client "
        "pinging faster is sent GOAWAY (too_many_pings).",
    )
    max_connection_idle_s: float = Field(
        300.0, gt=0, description="A connection with no call for this long is closed (GOAWAY)."
    )
    max_connection_age_s: float | None = Field(
        None,
        gt=0,
        description="Close every connection after this long (GOAWAY, calls in flight get "
        "a grace of the same length), so clients rebalance; unset keeps them.",
    )
    max_health_watchers: int = Field(
        100,
        ge=1,
        description="Health Watch calls open at once; past it, RESOURCE_EXHAUSTED.",
    )


class ModelLimits(_Section):
    """Bounds on model execution; see README "Limits"."""

    max_batch_time_s: float = Field(
        60.0,
        gt=0,
        description="Default for model.yaml's max_batch_time_s: a batch running longer "
        "marks its version unhealthy (its requests and new ones get 503) until it returns.",
    )
    unload_grace_s: float = Field(
        30.0,
        ge=0,
        description="How long an unload waits for a version's queued and running work; "
        "then what is left fails with 503 and a model thread that never returns is abandoned.",
    )


class LimitsSettings(_Section):
    http: HttpLimits = Field(default_factory=HttpLimits)
    grpc: GrpcLimits = Field(default_factory=GrpcLimits)
    models: ModelLimits = Field(default_factory=ModelLimits)


class SharedMemorySettings(_Section):
    """Triton's system shared memory extension (POSIX shared memory, same host only)."""

    mode: Literal["off", "local", "any"] = Field(
        "local",
        description="off: refused; local: for clients on the server's host (loopback "
        "addresses) only; any: for every client (only where remote clients share the host's "
        "/dev/shm, as containers of one pod can).",
    )
    max_regions: int = Field(
        64, ge=1, le=4096, description="Regions registered at once, over every caller."
    )
    max_total_bytes: int = Field(
        1 << 30, ge=1, description="Bytes of every registered region together."
    )


class StorageSettings(_Section):
    redis_uri: str | None = Field(
        None,
        description="Redis that every worker and replica shares (redis://host:6379/0, "
        "rediss://, unix://); unset: each process keeps its own state in memory.",
    )
    timeout_ms: float = Field(
        50.0,
        gt=0,
        le=10_000,
        description="Longest wait for Redis per call; past it the call counts as failed.",
    )

    @field_validator("redis_uri")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value and value.split("://", 1)[0] not in ("redis", "rediss", "unix"):
            raise ValueError("expected a redis://, rediss:// or unix:// URI")
        return value or None


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


def set_metrics_dir(path: Path) -> None:
    """prometheus_client learns its multiprocess folder from the environment, read when it
    is imported; worker processes inherit it from the supervisor."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def metrics_dir() -> Path | None:
    """The shared metrics folder when running as one of several workers."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None

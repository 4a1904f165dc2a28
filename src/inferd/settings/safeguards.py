"""The ``safeguards`` section (request size, rate limit, input validation) and the
``storage`` section (the Redis that rate limits and the cache may share)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from inferd.settings.section import Section


class RateLimitSettings(Section):
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


class InputValidationSettings(Section):
    enabled: bool = Field(True, description="Check inputs against the model's declaration.")
    max_sequence_length: int = Field(
        1_000_000, ge=1, description="Most elements one input may hold per batch row."
    )


class SafeguardsSettings(Section):
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


class StorageSettings(Section):
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

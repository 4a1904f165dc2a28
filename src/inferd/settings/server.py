"""The ``server`` section: addresses and ports, workers, logging, keys and TLS, CORS,
proxies, the dashboard."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, field_validator, model_validator

from inferd.settings.section import Section

#: A browser origin: scheme://host[:port], the host a name, an IPv4 address or [IPv6].
ORIGIN: Final = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(:[0-9]{1,5})?"
)


class ServerSettings(Section):
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

"""What this server serves, read-only: liveness, readiness, server and model metadata,
model configuration and statistics.

Metadata are frozen values (:class:`ServerMetadata`, :class:`ModelMetadata`) that each
transport encodes in its own codec (JSON in ``inferd.http``, protobuf in ``inferd.grpc``).
Configuration and statistics have one form already: Triton's JSON mapping of its
``ModelConfig`` and ``ModelStatistics`` messages, which gRPC parses into the messages."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from typing import Any, Final

from inferd import __version__
from inferd.core.gate import Gate
from inferd.core.store.manager import ModelManager
from inferd.core.store.triton_config import triton_config
from inferd.core.traffic.router import Router
from inferd.errors import NotFound, Unavailable
from inferd.settings import Settings
from inferd.types import TensorSpec

#: The protocol extensions every inferd serves (shared memory: when it is on).
EXTENSIONS: Final = (
    "binary_tensor_data",
    "model_configuration",
    "statistics",
    "model_repository",
    "generate",
    "classification",
    "sequence",
)


@dataclasses.dataclass(frozen=True, slots=True)
class ServerMetadata:
    name: str
    version: str
    extensions: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    #: Every serving version, or the one asked for.
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class Catalog:
    """Read-only views of what is served, for every transport to encode."""

    def __init__(
        self,
        settings: Settings,
        manager: ModelManager,
        router: Router,
        gate: Gate,
        loaded: asyncio.Event,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.router = router
        self.gate = gate
        #: Set once the server's start has loaded the repository.
        self.loaded = loaded

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        # Not before the repository has loaded: gRPC listens before that.
        return self.loaded.is_set() and not self.gate.draining and self.manager.ready()

    def server_metadata(self) -> ServerMetadata:
        extensions: tuple[str, ...] = EXTENSIONS
        if self.settings.shared_memory.mode != "off":
            extensions = (*extensions, "system_shared_memory")
        return ServerMetadata("inferd", __version__, extensions)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        return self.model_unready_reason(name, version) is None

    def model_unready_reason(self, name: str, version: str | None = None) -> str | None:
        """Why a model (version) does not serve now, or None when it does."""
        try:
            loaded = self.router.named(name, version)
        except Unavailable as exc:
            return exc.message
        if self.gate.draining:
            return "the server is shutting down"
        if loaded.batcher.fault is not None:
            return f"unhealthy: {loaded.batcher.fault}"
        return None

    def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        loaded = self.router.named(name, version)
        versions = self.manager.versions(name) if version is None else [loaded.version]
        return ModelMetadata(
            name, tuple(versions), loaded.platform, tuple(loaded.inputs), tuple(loaded.outputs)
        )

    def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Triton's model configuration, in its JSON form (core/store/triton_config.py)."""
        return triton_config(name, self.router.named(name, version))

    def model_stats(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        names = [name] if name else self.manager.model_names()
        stats = []
        for model in names:
            versions = [version] if version else self.manager.versions(model)
            for v in versions:
                with contextlib.suppress(Unavailable):
                    stats.append(self.router.named(model, v).stats.as_triton())
        if name and not stats:
            raise NotFound(f"model '{name}' has no serving version to report")
        return {"model_stats": stats}

    def snapshot(self) -> dict[str, Any]:
        """This process's readiness and statistics, as the process group reads them."""
        return {
            "pid": os.getpid(),
            "ready": self.ready(),
            "stats": self.model_stats()["model_stats"],
        }

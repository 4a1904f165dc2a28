"""Process assembly: settings -> repository -> manager -> service -> transports."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from inferd.core.manager import ModelManager
from inferd.core.repository import Repository
from inferd.core.service import InferenceService
from inferd.http.app import create_app
from inferd.metrics import Metrics
from inferd.settings import Settings

log = logging.getLogger("inferd")


def build_service(settings: Settings) -> InferenceService:
    repository = Repository(settings.models.repository) if settings.models.repository else None
    manager = ModelManager(repository, settings.performance)
    return InferenceService(settings, manager, Metrics())


def uvicorn_config(settings: Settings, service: InferenceService) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(service),
        host=settings.server.host,
        port=settings.server.port,
        loop="none",
        http="httptools",
        ws="auto",
        lifespan="on",
        log_level=settings.server.log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.server.shutdown_grace_s),
        server_header=False,
    )


async def run(settings: Settings) -> None:
    """Serve every transport of one process until a signal stops it."""
    service = build_service(settings)
    http = uvicorn.Server(uvicorn_config(settings, service))
    await http.serve()


def serve(settings: Settings) -> None:
    """Run one server process on uvloop until it is told to stop."""
    import uvloop

    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    uvloop.run(run(settings))

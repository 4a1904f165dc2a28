"""Process assembly: settings -> repository -> manager -> service -> transports."""

from __future__ import annotations

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
        loop="uvloop",
        http="httptools",
        ws="auto",
        lifespan="on",
        log_level=settings.server.log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.server.shutdown_grace_s),
        server_header=False,
    )


def serve(settings: Settings) -> None:
    """Run one server process until it is told to stop."""
    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    service = build_service(settings)
    server = uvicorn.Server(uvicorn_config(settings, service))
    server.run()

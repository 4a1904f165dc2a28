"""One server process's parts -- data plane, control plane, catalog -- and their lifecycle.

The server (inferd.server) owns the lifecycle alone: it builds a :class:`Node`, starts it
(load and warm up every model), drains it on a signal and stops it. Transports get the
parts they call; none of them starts or stops anything."""

from __future__ import annotations

import asyncio
import time

from inferd.core.cache import ResponseCache
from inferd.core.catalog import Catalog
from inferd.core.control import ControlPlane, settle_heap
from inferd.core.gate import Gate
from inferd.core.service import InferenceService
from inferd.core.serving.shm import SharedMemory
from inferd.core.storage import shared_store
from inferd.core.store.group import ProcessGroup
from inferd.core.store.manager import ModelManager
from inferd.core.store.repository import Repository
from inferd.core.traffic.router import Router
from inferd.metrics import Metrics
from inferd.settings import Settings, metrics_dir


class Node:
    """A process's parts, built once: transports call ``service``, ``control`` and
    ``catalog``; the server calls :meth:`start`, :meth:`drain` and :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        manager: ModelManager,
        metrics: Metrics,
        cache: ResponseCache | None = None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.metrics = metrics
        self.cache = cache
        #: Which version answers a request (labels, traffic split).
        self.router = Router(manager, settings.routing)
        self.gate = Gate()
        #: Set once :meth:`start` has loaded the repository.
        self.loaded = asyncio.Event()
        #: Registered system shared memory regions (core/serving/shm.py).
        self.shared_memory = SharedMemory(settings.shared_memory, workers=settings.server.workers)
        self.service = InferenceService(
            settings, manager, self.router, metrics, self.gate, self.shared_memory
        )
        self.control = ControlPlane(settings, manager, self.router, metrics, cache)
        self.catalog = Catalog(settings, manager, self.router, self.gate, self.loaded)
        #: The --workers process group; alone, this process (see :func:`build_node`).
        self.group = ProcessGroup(None, 1, self.catalog.snapshot)
        self._started = False
        self._stop_by: float | None = None  # when stop() must be done, once draining

    async def start(self) -> None:
        """Load and warm up every model of the repository (once)."""
        if not self._started:
            self._started = True
            await self.manager.load_all()
            settle_heap()
            self.loaded.set()

    async def drain(self, grace_s: float) -> bool:
        """Refuse new work and wait (at most ``grace_s``) for accepted work to finish.
        True when everything finished in time. :meth:`stop` then takes no longer than
        what is left of the grace."""
        self.gate.draining = True
        self._stop_by = time.monotonic() + grace_s
        await self.control.rollouts.close()  # no traffic comes now: nothing left to judge
        try:
            async with asyncio.timeout(grace_s):
                await self.gate.idle.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Refuse new work, let queued and running work finish, unload everything; after
        :meth:`drain`, within what is left of its grace."""
        self.gate.draining = True
        grace = None if self._stop_by is None else max(0.0, self._stop_by - time.monotonic())
        await self.control.rollouts.close()
        await self.control.shadows.close()
        await self.manager.close(grace)
        self.shared_memory.close()
        if self.cache is not None:
            await self.cache.close()


def build_node(settings: Settings) -> Node:
    """A process's parts from its settings (not started)."""
    repository = Repository(settings.models.repository) if settings.models.repository else None
    metrics = Metrics(metrics_dir())
    store = shared_store(settings.storage.redis_uri, settings.storage.timeout_ms / 1000)
    cache = ResponseCache(store, metrics)
    manager = ModelManager(repository, settings.performance, metrics, settings.limits.models, cache)
    node = Node(settings, manager, metrics, cache)
    node.group = ProcessGroup(metrics_dir(), settings.server.workers, node.catalog.snapshot)
    return node

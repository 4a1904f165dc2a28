"""Repository polling: what changed on disk goes through the manager's swap pipeline.

Every ``models.poll_interval_s`` the poller takes a :class:`Fingerprint` of every model
folder (stat calls and model.yaml's digest; no artifact is opened) and compares it with the
previous one. Only models whose fingerprint changed are touched:

- a new model folder loads; it counts for the server's readiness once it serves;
- a model folder that is gone unloads;
- a changed model.yaml reloads every version the policy selects;
- a version folder added, removed or changed reloads the model, building only the new and
  changed versions anew: the policy then decides what serves and what unloads.

A load that fails is logged and counted by the manager, what served before serves on, and
the poller tries again when the model's files change again. Loads and unloads hold the
manager's lock, so a poll and an admin load never reload one model at once. A model
unloaded through the admin API stays unloaded until its files change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from inferd.core.serving.pipeline_load import load_waves
from inferd.core.store.manager import ModelManager
from inferd.core.store.repository import Fingerprint, Repository
from inferd.errors import InferdError, NotFound

log = logging.getLogger("inferd.polling")


class RepositoryPoller:
    """Polls the manager's repository every ``interval_s`` seconds (0: never)."""

    def __init__(self, manager: ModelManager, interval_s: float) -> None:
        self._manager = manager
        self._repository: Repository | None = manager.repository if interval_s > 0 else None
        self._interval_s = interval_s
        self._seen: dict[str, Fingerprint] = {}
        self._task: asyncio.Task[None] | None = None
        #: The polling task's latest scan (it may be under way).
        self._scan: asyncio.Future[None] | None = None
        self._stopping = False

    def start(self, loaded: asyncio.Event) -> None:
        """Take the first fingerprints now, so that nothing changed while the models load
        is missed, and poll once ``loaded`` is set. Does nothing when polling is off."""
        if self._repository is None or self._task is not None:
            return
        self._seen = self._fingerprints(self._repository) or {}
        self._task = asyncio.create_task(self._run(loaded), name="repository poller")

    async def stop(self) -> None:
        """Stop polling. A scan under way finishes the load it has started and starts no
        other."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._scan is not None:
            await self._scan

    async def _run(self, loaded: asyncio.Event) -> None:
        await loaded.wait()
        while True:
            await asyncio.sleep(self._interval_s)
            # Shielded: stopping cancels the polling, not a load under way.
            self._scan = asyncio.ensure_future(self._logged_scan())
            await asyncio.shield(self._scan)

    async def _logged_scan(self) -> None:
        try:
            await self.scan()
        except Exception:  # the next poll tries again: polling never stops on its own
            log.exception("repository poll failed")

    async def scan(self) -> list[str]:
        """Compare the repository with the last scan and apply what changed; returns
        what was done, one entry per model (``load m``, ``reload m ['3']``, ``unload m``)."""
        repository = self._repository
        if repository is None:
            return []
        now = await asyncio.to_thread(self._fingerprints, repository)
        return [] if now is None else await self._apply(repository, now)

    async def _apply(self, repository: Repository, now: dict[str, Fingerprint]) -> list[str]:
        done: list[str] = []
        for name in sorted(self._seen.keys() - now.keys()):
            if self._stopping:
                return done
            del self._seen[name]
            if self._manager.knows(name):
                log.info("model '%s': its folder is gone; unloading", name)
                await self._manager.unload(name)
                done.append(f"unload {name}")
        changed = [name for name in sorted(now) if self._seen.get(name) != now[name]]
        # A pipeline after the models its steps name (inferd.core.serving.pipeline_load).
        for name in [n for wave in load_waves(repository, changed) for n in wave]:
            fingerprint, before = now[name], self._seen.get(name)
            if self._stopping:
                return done
            self._seen[name] = fingerprint
            if before is None:
                rebuild, action, why = None, f"load {name}", "a new model folder"
            elif before.config != fingerprint.config:
                rebuild, action, why = None, f"reload {name}", "model.yaml changed"
            else:
                rebuild = fingerprint.changed_versions(before)
                action = f"reload {name} {sorted(rebuild)}"
                why = f"version folders changed: {sorted(rebuild)} new or changed"
            log.info("model '%s': %s; loading", name, why)
            try:
                await self._manager.load(name, rebuild, required=False)
            except InferdError as exc:  # its folder went away meanwhile: the next scan sees it
                log.warning("model '%s': %s", name, exc.message)
            done.append(action)
        return done

    def _fingerprints(self, repository: Repository) -> dict[str, Fingerprint] | None:
        """Every model's fingerprint; None when the repository cannot be listed (nothing
        is unloaded for that). A model that cannot be read now keeps its last one."""
        try:
            names = repository.model_names()
        except OSError as exc:
            log.warning("repository %s cannot be listed: %s", repository.root, exc)
            return None
        prints: dict[str, Fingerprint] = {}
        for name in names:
            try:
                prints[name] = repository.fingerprint(name)
            except NotFound:
                continue
            except OSError as exc:
                log.warning("model '%s': cannot be read: %s", name, exc)
                if name in self._seen:
                    prints[name] = self._seen[name]
        return prints

"""``--workers N``: N server processes sharing the ports, kept alive by a supervisor.

Each worker binds the HTTP and gRPC ports with SO_REUSEPORT, so the kernel spreads
connections across them. Metrics go to a shared folder (prometheus_client's multiprocess
mode) and every worker's ``/metrics`` answers with the sum over all workers. A worker that
dies is logged and replaced; SIGTERM/SIGINT is passed to every worker, which drains, and
the supervisor exits once they have.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from inferd.settings import Settings, set_metrics_dir

log = logging.getLogger("inferd.supervisor")

#: A worker that dies sooner than this after its start counts as a crash loop.
MIN_UPTIME_S = 5.0
MAX_BACKOFF_S = 10.0


def _worker_main(settings: Settings, worker_id: int) -> None:
    # Until the server installs its draining handler there is nothing to drain: a stop
    # request during start-up is a clean exit.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    from inferd.server import serve

    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_stop_with_parent, args=(parent.sentinel,), daemon=True).start()
    serve(settings, worker_id=worker_id)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _stop_with_parent(sentinel: int) -> None:
    """A worker whose supervisor died (even by SIGKILL) drains and exits like on SIGTERM."""
    multiprocessing.connection.wait([sentinel])
    os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, tuple[BaseProcess, float]] = {}
        self.stopping = False
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="inferd-metrics-"))

    def _spawn(self, worker_id: int) -> None:
        process = self.context.Process(
            target=_worker_main, args=(self.settings, worker_id), name=f"inferd-worker-{worker_id}"
        )
        process.start()
        self.workers[worker_id] = (process, time.monotonic())
        log.info("worker %d started (pid %s)", worker_id, process.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.info(
                "received %s: draining %d workers", signal.Signals(signum).name, len(self.workers)
            )
        self.stopping = True
        for process, _ in self.workers.values():
            if process.is_alive() and process.pid is not None:
                process.terminate()

    def run(self) -> int:
        """Start the workers and keep them running until told to stop; the exit code."""
        set_metrics_dir(self.metrics_dir)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        backoff = 0.0
        try:
            for worker_id in range(self.settings.server.workers):
                self._spawn(worker_id)
            while not self.stopping:
                sentinels = [p.sentinel for p, _ in self.workers.values()]
                multiprocessing.connection.wait(sentinels, timeout=1.0)
                for worker_id, (process, started) in list(self.workers.items()):
                    if process.is_alive() or self.stopping:
                        continue
                    self._forget(process)
                    log.error(
                        "worker %d (pid %s) exited with code %s; restarting it",
                        worker_id,
                        process.pid,
                        process.exitcode,
                    )
                    crashed_fast = time.monotonic() - started < MIN_UPTIME_S
                    backoff = min(MAX_BACKOFF_S, backoff * 2 or 0.5) if crashed_fast else 0.0
                    if backoff:
                        time.sleep(backoff)
                    self._spawn(worker_id)
            return self._wait_all()
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _forget(self, process: BaseProcess) -> None:
        from prometheus_client import multiprocess

        if process.pid is not None:
            multiprocess.mark_process_dead(process.pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def _wait_all(self) -> int:
        deadline = time.monotonic() + self.settings.server.shutdown_grace_s + 10
        code = 0
        for process, _ in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
            code = code or (process.exitcode or 0)
        return code

"""``--workers N``: N server processes sharing the ports, kept alive by a supervisor.

The supervisor owns the ports (``inferd.ports``): it binds the HTTP socket and hands it to
every worker, and claims the gRPC port, which the workers bind together with SO_REUSEPORT.
A port in use stops it before any worker starts. Metrics go to a shared folder
(prometheus_client's multiprocess mode) and every worker's ``/metrics`` answers with the
sum over all workers. A worker that dies is logged and replaced; a worker that cannot start
(a port in use, a setting it refuses) stops them all and the supervisor exits 1.
SIGTERM/SIGINT is passed to every worker, which drains, and the supervisor exits once they
have.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from inferd.errors import InferdError
from inferd.ports import log_grpc_url, open_ports
from inferd.settings import Settings, set_metrics_dir
from inferd.signals import block_stop_signals, restore_mask

log = logging.getLogger("inferd.supervisor")

#: A worker that dies sooner than this after its start counts as a crash loop.
MIN_UPTIME_S = 5.0
MAX_BACKOFF_S = 10.0
#: A worker's exit status when it cannot start (sysexits' EX_CONFIG): not worth a restart.
CANNOT_START = 78


def _worker_main(settings: Settings, worker_id: int, http_socket: socket.socket) -> None:
    # Spawned with SIGTERM/SIGINT blocked (``Supervisor._spawn``); ``serve`` unblocks them
    # once its event loop handles them.
    from inferd.server import serve

    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_stop_with_parent, args=(parent.sentinel,), daemon=True).start()
    try:
        serve(settings, worker_id=worker_id, http_socket=http_socket)
    except InferdError as exc:
        print(f"inferd: {exc.message}", file=sys.stderr, flush=True)
        sys.exit(CANNOT_START)


def _stop_with_parent(sentinel: int) -> None:
    """A worker whose supervisor died (even by SIGKILL) drains and exits like on SIGTERM."""
    multiprocessing.connection.wait([sentinel])
    os.kill(os.getpid(), signal.SIGTERM)


#: A worker process's entry point: settings, worker id and the HTTP socket to serve on.
WorkerMain = Callable[[Settings, int, socket.socket], None]


class Supervisor:
    def __init__(self, settings: Settings, worker_main: WorkerMain = _worker_main) -> None:
        self.settings = settings
        self.worker_main = worker_main
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, tuple[BaseProcess, float]] = {}
        self.stopping = False
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="inferd-metrics-"))
        self.http_socket: socket.socket | None = None

    def _spawn(self, worker_id: int) -> None:
        from multiprocessing import resource_tracker

        process = self.context.Process(
            target=self.worker_main,
            args=(self.settings, worker_id, self.http_socket),
            name=f"inferd-worker-{worker_id}",
        )
        # The worker starts with the stop signals blocked (the mask survives exec) and
        # unblocks them once it handles them: a SIGTERM at any moment of its start-up is a
        # drain. The resource tracker unblocks them when it starts, so it starts first.
        resource_tracker.ensure_running()
        mask = block_stop_signals()
        try:
            if self.stopping:
                return
            process.start()
            self.workers[worker_id] = (process, time.monotonic())
        finally:
            restore_mask(mask)
        log.info("worker %d started (pid %s)", worker_id, process.pid)
        if self.stopping:
            # A signal that arrived just before the mask may have been handled while the
            # worker started, before it was listed: it is told here.
            process.terminate()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.info(
                "received %s: draining %d workers", signal.Signals(signum).name, len(self.workers)
            )
        self._stop_workers()

    def _stop_workers(self) -> None:
        self.stopping = True
        for process, _ in self.workers.values():
            if process.is_alive() and process.pid is not None:
                process.terminate()

    def run(self) -> int:
        """Start the workers and keep them running until told to stop; the exit code.

        Raises :class:`inferd.ports.PortInUse` before any worker starts.
        """
        server = self.settings.server
        ports = None
        backoff = 0.0
        failed = False
        try:
            ports = open_ports(server)
            if server.grpc_port:
                log_grpc_url(server.host, server.grpc_port)
            self.http_socket = ports.http
            set_metrics_dir(self.metrics_dir)
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            for worker_id in range(self.settings.server.workers):
                self._spawn(worker_id)
            while not self.stopping:
                sentinels = [p.sentinel for p, _ in self.workers.values()]
                multiprocessing.connection.wait(sentinels, timeout=1.0)
                for worker_id, (process, started) in list(self.workers.items()):
                    if process.is_alive() or self.stopping:
                        continue
                    self._forget(process)
                    if process.exitcode == CANNOT_START:
                        log.error("worker %d could not start: stopping every worker", worker_id)
                        failed = True
                        self._stop_workers()
                        break
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
            code = self._wait_all()
            return 1 if failed else code
        finally:
            if ports is not None:
                ports.close()
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

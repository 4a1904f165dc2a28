"""The process environment that settings cannot carry: prometheus_client's multiprocess
folder, shared by the supervisor and its workers."""

from __future__ import annotations

import os
from pathlib import Path


def set_metrics_dir(path: Path) -> None:
    """prometheus_client learns its multiprocess folder from the environment, read when it
    is imported; worker processes inherit it from the supervisor."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def metrics_dir() -> Path | None:
    """The shared metrics folder when running as one of several workers."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None

"""The dashboard's one JSON document, read from what the server already keeps: the model
manager's state table, the router's labels and splits, rollouts, and the Prometheus
registry (no second metrics system). Counters are cumulative; the page turns two documents
into rates and percentiles (``static/dashboard.js``).

Each part is there only when the caller may read it elsewhere (:data:`PARTS`): models,
versions, states and labels with metadata; live figures, cache and shadow counts with
``/metrics``; traffic splits, shadow settings and rollouts with the control API.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from prometheus_client.metrics_core import Metric

from inferd import __version__
from inferd.core.control import ControlPlane
from inferd.core.node import Node
from inferd.errors import NotFound
from inferd.gateway.operations import Operation
from inferd.metrics import LATENCY_BUCKETS

#: Part of the document -> the operation a caller must be allowed to see it.
PARTS: Final[dict[str, Operation]] = {
    "models": Operation.METADATA,
    "live": Operation.METRICS,
    "control": Operation.ADMIN,
}

Allowed = Callable[[Operation], bool]


def state(node: Node, allowed: Allowed) -> dict[str, Any]:
    """The document for a caller; ``allowed`` says which operations it may perform."""
    parts = [part for part, operation in PARTS.items() if allowed(operation)]
    doc: dict[str, Any] = {
        "server": {"name": "inferd", "version": __version__, "ready": node.catalog.ready()},
        "time": time.time(),
        "parts": parts,
        "models": _models(node, "control" in parts) if "models" in parts else [],
    }
    if "live" in parts:
        doc["live"] = live(node.metrics.collect())
        doc["latency_buckets"] = list(LATENCY_BUCKETS)  # the last bucket, +Inf, has no bound
    return doc


def _models(node: Node, control: bool) -> list[dict[str, Any]]:
    rows: dict[str, list[dict[str, str]]] = {}
    for row in node.control.repository_index():
        rows.setdefault(row["name"], []).append(
            {"version": row["version"], "state": row["state"], "reason": row["reason"]}
        )
    models = []
    for name, versions in rows.items():
        entry: dict[str, Any] = {
            "name": name,
            "versions": versions,
            "labels": node.router.labels(name),
        }
        if control:
            entry.update(_control(node.control, name))
        models.append(entry)
    return models


def _control(control: ControlPlane, name: str) -> dict[str, Any]:
    """What only the control API shows: the split, the shadow's settings, the rollout."""
    shadow = control.shadows.get(name)
    rollout = None
    with contextlib.suppress(NotFound):
        view = control.rollout(name)
        decisions = view.pop("decisions")
        view.pop("plan", None)
        rollout = {**view, "last_decision": decisions[-1] if decisions else None}
    return {
        "traffic": control.router.traffic(name),
        "shadow": None
        if shadow is None
        else {"version": shadow.config.version, "fraction": shadow.config.fraction},
        "rollout": rollout,
    }


def live(families: Iterable[Metric]) -> dict[str, Any]:
    """Per model version: requests by status, the latency histogram (non-cumulative bucket
    counts), batch size sum and count, queue depth; per model: cache lookups by result and
    shadow outcomes by shadow version. All cumulative but the queue depth."""
    versions: dict[str, dict[str, Any]] = {}
    models: dict[str, dict[str, Any]] = {}

    def version(labels: dict[str, str]) -> dict[str, Any]:
        key = f"{labels['model']}/{labels['version']}"
        return versions.setdefault(
            key,
            {
                "model": labels["model"],
                "version": labels["version"],
                "requests": {},
                "latency": [0.0] * (len(LATENCY_BUCKETS) + 1),
                "batch": {"sum": 0.0, "count": 0.0},
                "queue_depth": 0.0,
            },
        )

    def model(name: str) -> dict[str, Any]:
        return models.setdefault(name, {"cache": {}, "shadow": {}})

    for family in families:
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            name = sample.name
            if name == "inferd_requests_total":
                requests = version(labels)["requests"]
                requests[labels["status"]] = requests.get(labels["status"], 0.0) + value
            elif name == "inferd_request_duration_seconds_bucket":
                _bucket(version(labels)["latency"], labels["le"], value)
            elif name in ("inferd_batch_size_sum", "inferd_batch_size_count"):
                version(labels)["batch"][name.rsplit("_", 1)[1]] = value
            elif name == "inferd_queue_depth":
                version(labels)["queue_depth"] = value
            elif name == "inferd_cache_lookups_total":
                model(labels["model"])["cache"][labels["result"]] = value
            elif name == "inferd_shadow_requests_total":
                shadow = model(labels["model"])["shadow"].setdefault(labels["version"], {})
                shadow[labels["outcome"]] = value
    for entry in versions.values():
        _uncumulate(entry["latency"])
    return {"versions": sorted(versions.values(), key=_order), "models": models}


def _order(entry: dict[str, Any]) -> tuple[str, str]:
    return entry["model"], entry["version"]


def _bucket(counts: list[float], le: str, value: float) -> None:
    """Sum a cumulative bucket (``le``) over protocols into ``counts``."""
    bound = math.inf if le == "+Inf" else float(le)
    bounds = [*LATENCY_BUCKETS, math.inf]
    counts[bounds.index(bound)] += value


def _uncumulate(counts: list[float]) -> None:
    for i in range(len(counts) - 1, 0, -1):
        counts[i] -= counts[i - 1]

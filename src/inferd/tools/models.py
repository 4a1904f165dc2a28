"""``inferd models``: a table of the server's models, versions, states, labels, traffic
split, shadow and rollout, as far as the key may read them (``/dashboard/state``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from inferd.errors import ConfigError, NotFound
from inferd.tools.target import client_of

HIDDEN = "(admin)"


def rows(state: dict[str, Any]) -> list[dict[str, str]]:
    """One row per model version, from the dashboard's state document."""
    control = "control" in state["parts"]
    out = []
    for model in state["models"]:
        labels = ", ".join(f"{k}->{v}" for k, v in sorted(model["labels"].items()))
        for version in model["versions"]:
            row = {
                "model": model["name"],
                "version": version["version"] or "-",
                "state": version["state"]
                + (f" ({version['reason']})" if version["reason"] else ""),
                "labels": labels or "-",
                "traffic": HIDDEN,
                "shadow": HIDDEN,
                "rollout": HIDDEN,
            }
            if control:
                row["traffic"] = _traffic(model["traffic"], version["version"])
                row["shadow"] = _shadow(model["shadow"])
                row["rollout"] = _rollout(model["rollout"])
            out.append(row)
    return out


def _traffic(split: dict[str, int] | None, version: str) -> str:
    if split is None:
        return "latest"
    return f"{split.get(version, 0)} %"


def _shadow(shadow: dict[str, Any] | None) -> str:
    if shadow is None:
        return "-"
    return f"{shadow['version']} at {shadow['fraction']:.0%}"


def _rollout(rollout: dict[str, Any] | None) -> str:
    if rollout is None:
        return "-"
    return (
        f"{rollout['state']}: {rollout['canary']} step {rollout['step']} at {rollout['percent']} %"
    )


def run(args: argparse.Namespace) -> int:
    with client_of(args) as client:
        try:
            state = client.overview()
        except NotFound:
            raise ConfigError(
                f"{args.url} serves no /dashboard/state: its dashboard is off (server.dashboard); "
                "inferd models reads it"
            ) from None
    table_rows = rows(state)
    if args.json:
        print(json.dumps(table_rows))
        return 0
    table = Table(title=f"models at {args.url}")
    for column in ("model", "version", "state", "labels", "traffic", "shadow", "rollout"):
        table.add_column(column)
    for row in table_rows:
        table.add_row(*row.values())
    Console().print(table)
    return 0

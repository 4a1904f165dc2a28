"""The client commands' flags (``inferd predict``, ``models``, ``bench``), apart from the
commands themselves so that building the parser imports nothing heavy."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"
#: Where the commands read an API key when --api-key is not given.
KEY_VARIABLE = "INFERD_API_KEY"


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url", nargs="?", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})"
    )
    parser.add_argument(
        "--api-key", default=os.environ.get(KEY_VARIABLE), help=f"API key (default ${KEY_VARIABLE})"
    )
    parser.add_argument(
        "--ca",
        type=Path,
        help="CA (PEM) that signed the server's certificate: https, and TLS on the gRPC port",
    )
    parser.add_argument(
        "--grpc-target",
        help="gRPC host:port for --protocol grpc (default: the URL's host, port 8081)",
    )


def add_predict(commands: Any) -> None:
    parser = commands.add_parser(
        "predict", help="send one request to a server and print its outputs"
    )
    add_server_flags(parser)
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", help="a version or a label (default: the server's choice)")
    parser.add_argument("--data", help="JSON: a nested list (one input) or {input: values}")
    parser.add_argument("--file", type=Path, help="a .json, .npy or .npz file of inputs")
    parser.add_argument("--out", type=Path, help="save outputs: .npy (the first) or .npz (all)")
    parser.add_argument("--stream", action="store_true", help="print partial answers as they come")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--timeout", type=float, help="deadline in seconds")


def add_models(commands: Any) -> None:
    parser = commands.add_parser(
        "models", help="list a server's models: versions, states, labels, splits, rollouts"
    )
    add_server_flags(parser)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def add_bench(commands: Any) -> None:
    parser = commands.add_parser(
        "bench", help="load-test a model: throughput and latency per concurrency"
    )
    add_server_flags(parser)
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", help="a version or a label")
    parser.add_argument("--concurrency", default="1,8,64", help="connections per step (1,8,64)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load first")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--binary", action="store_true", help="HTTP: binary tensor data")
    parser.add_argument("--data", type=Path, help="inputs: a .json, .npy or .npz file")
    parser.add_argument(
        "--batch", type=int, default=1, help="rows of the zeros sent without --data"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the results as JSON")
    output.add_argument("--csv", action="store_true", help="print the results as CSV")
    parser.add_argument("--plot", type=Path, help="draw throughput and p99 to this image")


#: Command -> (its flags, the module whose ``run`` serves it).
TOOLS: dict[str, tuple[Any, str]] = {
    "predict": (add_predict, "inferd.tools.predict"),
    "models": (add_models, "inferd.tools.models"),
    "bench": (add_bench, "inferd.tools.bench"),
}

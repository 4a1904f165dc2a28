"""``inferd predict``: one request, its outputs printed (JSON) or saved (``--out``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from inferd.client import Client, GrpcClient, InferResult
from inferd.errors import ConfigError
from inferd.tools.target import (
    Arrays,
    client_of,
    grpc_target,
    jsonable,
    read_inputs,
)


def run(args: argparse.Namespace) -> int:
    if args.stream and args.out is not None:
        raise ConfigError("--stream prints each partial answer as it comes; drop --out")
    with client_of(args, timeout=args.timeout) as client:
        inputs = read_inputs(client.model_metadata(args.model, args.version), args.data, args.file)
        if args.protocol == "grpc":
            target = grpc_target(args)
            tls = {"root_certificates": args.ca.read_bytes()} if args.ca else {}
            with GrpcClient(target, api_key=args.api_key, timeout=args.timeout, **tls) as rpc:
                return _answer(args, rpc, inputs)
        return _answer(args, client, inputs)


def _answer(args: argparse.Namespace, client: Client | GrpcClient, inputs: Arrays) -> int:
    if args.stream:
        for part in client.stream(args.model, inputs, version=args.version):
            _print(part)  # as it comes
        return 0
    result = client.infer(args.model, inputs, version=args.version)
    if args.out is None:
        _print(result)
    else:
        _save(result, args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _print(result: InferResult) -> None:
    doc = {
        "model_name": result.model,
        "model_version": result.version,
        "outputs": {name: jsonable(array) for name, array in result.outputs.items()},
    }
    print(json.dumps(doc), flush=True)


def _save(result: InferResult, path: Path) -> None:
    if path.suffix == ".npz":
        arrays: dict[str, Any] = {name: np.asarray(a) for name, a in result.outputs.items()}
        np.savez(path, **arrays)
    elif path.suffix == ".npy":
        np.save(path, np.asarray(next(iter(result.outputs.values()))), allow_pickle=False)
    else:
        raise ConfigError(f"--out {path}: expected a .npy or .npz file")

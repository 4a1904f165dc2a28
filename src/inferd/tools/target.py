"""What the client commands share: the server's address and key, and inputs read from the
command line or a file, typed by the model's metadata."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import numpy as np

from inferd.client import Client
from inferd.errors import ConfigError, InvalidArgument
from inferd.types import DATATYPE_TO_NUMPY

Arrays = dict[str, np.ndarray[Any, Any]]


def client_of(args: argparse.Namespace, **options: Any) -> Client:
    verify: bool | str = str(args.ca) if args.ca else True
    return Client(args.url, api_key=args.api_key, verify=verify, **options)


def grpc_target(args: argparse.Namespace) -> str:
    if args.grpc_target:
        return str(args.grpc_target)
    host = urlsplit(args.url).hostname or "127.0.0.1"
    return f"{host}:8081"


def grpc_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS for the gRPC port when ``--ca`` names the CA that signed it."""
    if args.ca is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=args.ca.read_bytes())


def read_inputs(
    metadata: dict[str, Any], data: str | None, file: Path | None, batch: int = 1
) -> Arrays:
    """The request's inputs: ``data`` (JSON: a nested list for a model of one input, or an
    object of input name -> nested list), a ``.json`` or ``.npy``/``.npz`` file, or, with
    neither, zeros of the declared shapes (``-1`` taken as ``batch``). Each is cast to the
    datatype the model declares."""
    declared = {t["name"]: t for t in metadata["inputs"]}
    if data is not None and file is not None:
        raise ConfigError("give --data or --file, not both")
    if data is None and file is None:
        return {
            name: np.zeros(
                [batch if d == -1 else d for d in t["shape"]], DATATYPE_TO_NUMPY[t["datatype"]]
            )
            for name, t in declared.items()
        }
    values: Any
    if file is not None:
        if file.suffix == ".npy":
            values = np.load(file, allow_pickle=False)
        elif file.suffix == ".npz":
            with np.load(file, allow_pickle=False) as archive:
                values = {name: archive[name] for name in archive.files}
        else:
            values = _json(file.read_text(), str(file))
    else:
        values = _json(str(data), "--data")
    if not isinstance(values, dict):
        if len(declared) != 1:
            raise ConfigError(
                f"the model has {len(declared)} inputs {sorted(declared)}: give an object of "
                "input name -> values"
            )
        values = {next(iter(declared)): values}
    unknown = values.keys() - declared.keys()
    if unknown:
        raise InvalidArgument(
            f"the model has no input(s) {sorted(unknown)}; it has {sorted(declared)}"
        )
    return {name: _typed(value, declared[name]["datatype"]) for name, value in values.items()}


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON ({exc})") from None


def _typed(value: Any, datatype: str) -> np.ndarray[Any, Any]:
    if datatype == "BYTES":
        return np.asarray(value, dtype=object if not isinstance(value, np.ndarray) else None)
    return np.asarray(value, dtype=DATATYPE_TO_NUMPY[datatype])


def jsonable(array: np.ndarray[Any, Any]) -> Any:
    """An output as JSON values (BYTES as text, where it is UTF-8)."""
    if array.dtype != object:
        return array.tolist()
    flat = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in array.reshape(-1)]
    decoded = np.empty(len(flat), dtype=object)
    decoded[:] = flat
    return decoded.reshape(array.shape).tolist()

"""The HTTP and gRPC contestants: how each is addressed and how its answer is checked.

A contestant is checked once (its answer must match the reference MLP) before it is put
under load, so a fast error page can never pass for a fast server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import orjson
from artifacts import Payloads, served_name
from loadgen import HttpTarget

JSON: Final = {"Content-Type": "application/json"}

FLOOR: Final = "HTTP floor (bare ASGI + orjson)"
NAIVE: Final = "naive FastAPI + torch"


def inferd_label(protocol: str, runtime: str) -> str:
    return f"inferd {protocol} ({runtime})"


#: inferd's protocols, in table order.
REST_JSON: Final = "REST JSON"
PREDICT: Final = "/predict"
REST_BINARY: Final = "REST binary"
GRPC: Final = "gRPC"
WEBSOCKET: Final = "WebSocket"
INFERD_PROTOCOLS: Final = (REST_JSON, PREDICT, REST_BINARY, GRPC, WEBSOCKET)

Decode = Callable[[bytes, dict[str, str]], np.ndarray[Any, Any] | None]


@dataclasses.dataclass(frozen=True)
class HttpContestant:
    label: str
    target: HttpTarget
    decode: Decode

    def check(self, status: int, body: bytes, headers: dict[str, str], expected: Any) -> None:
        if status != 200:
            raise RuntimeError(f"{self.label}: answered {status}: {body[:300]!r}")
        got = self.decode(body, headers)
        if got is not None and not np.allclose(got, expected, rtol=1e-4, atol=1e-4):
            raise RuntimeError(f"{self.label}: answered {got}, the reference is {expected}")


def _no_check(body: bytes, headers: dict[str, str]) -> None:
    return None


def _predictions(body: bytes, headers: dict[str, str]) -> np.ndarray[Any, Any]:
    return np.asarray(orjson.loads(body)["predictions"], dtype=np.float32).reshape(-1)


def _v2_json(body: bytes, headers: dict[str, str]) -> np.ndarray[Any, Any]:
    return np.asarray(orjson.loads(body)["outputs"][0]["data"], dtype=np.float32)


def _v2_binary(body: bytes, headers: dict[str, str]) -> np.ndarray[Any, Any]:
    lengths = {k.lower(): v for k, v in headers.items()}
    split = int(lengths["inference-header-content-length"])
    return np.frombuffer(body[split:], dtype=np.float32)


def floor(base: str, payloads: Payloads) -> HttpContestant:
    return HttpContestant(FLOOR, HttpTarget(f"{base}/", payloads.v2_json, JSON), _no_check)


def naive(base: str, payloads: Payloads) -> HttpContestant:
    return HttpContestant(
        NAIVE, HttpTarget(f"{base}/predict", payloads.simple_json, JSON), _predictions
    )


def inferd_http(base: str, model: str, runtime: str, payloads: Payloads) -> list[HttpContestant]:
    name = served_name(model, runtime)
    infer = f"{base}/v2/models/{name}/infer"
    binary_headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(payloads.v2_binary_header_length),
    }
    return [
        HttpContestant(
            inferd_label(REST_JSON, runtime), HttpTarget(infer, payloads.v2_json, JSON), _v2_json
        ),
        HttpContestant(
            inferd_label(PREDICT, runtime),
            HttpTarget(f"{base}/models/{name}/predict", payloads.simple_json, JSON),
            _predictions,
        ),
        HttpContestant(
            inferd_label(REST_BINARY, runtime),
            HttpTarget(infer, payloads.v2_binary, binary_headers),
            _v2_binary,
        ),
    ]

"""Every REST path and gRPC method maps to one operation."""

from __future__ import annotations

import pytest

from inferd.gateway.operations import Operation, PathTable, grpc_operation


@pytest.mark.parametrize(
    ("path", "operation", "model", "version"),
    [
        ("/healthz", Operation.HEALTH, None, None),
        ("/v2/health/ready", Operation.HEALTH, None, None),
        ("/v2/models/tiny/ready", Operation.HEALTH, "tiny", None),
        ("/metrics", Operation.METRICS, None, None),
        ("/v2/models/tiny/infer", Operation.INFER, "tiny", None),
        ("/v2/models/tiny/versions/2/infer", Operation.INFER, "tiny", "2"),
        ("/predict", Operation.INFER, None, None),
        ("/models/tiny/predict", Operation.INFER, "tiny", None),
        ("/predict/stream", Operation.STREAM, None, None),
        ("/v2/models/tiny/stream", Operation.STREAM, "tiny", None),
        ("/v2/repository/index", Operation.ADMIN, None, None),
        ("/v2/repository/models/tiny/unload", Operation.ADMIN, "tiny", None),
        ("/v2/models/tiny/traffic", Operation.ADMIN, "tiny", None),
        ("/v2/models/tiny/shadow", Operation.ADMIN, "tiny", None),
        ("/v2/models/tiny", Operation.METADATA, None, None),
        ("/v2/models//infer", Operation.METADATA, None, None),  # not a route: 404 later
        ("/nothing/here", Operation.METADATA, None, None),
    ],
)
def test_paths(path: str, operation: Operation, model: str | None, version: str | None) -> None:
    table = PathTable()
    assert table.classify(path) == (operation, model, version)
    assert table.classify(path) == (operation, model, version)  # from the cache


@pytest.mark.parametrize(
    ("method", "operation"),
    [
        ("/grpc.health.v1.Health/Check", Operation.HEALTH),
        ("/inference.GRPCInferenceService/ServerLive", Operation.HEALTH),
        ("/inference.GRPCInferenceService/ModelInfer", Operation.INFER),
        ("/inference.GRPCInferenceService/ModelStreamInfer", Operation.STREAM),
        ("/inference.GRPCInferenceService/RepositoryModelLoad", Operation.ADMIN),
        ("/inferd.simple.InferenceService/Predict", Operation.INFER),
        ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Operation.METADATA),
    ],
)
def test_grpc_methods(method: str, operation: Operation) -> None:
    assert grpc_operation(method) is operation

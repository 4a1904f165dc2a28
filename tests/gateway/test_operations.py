"""Every gRPC method maps to one operation (REST paths: tests/http/test_routes.py)."""

from __future__ import annotations

import pytest

from inferd.gateway.operations import Operation, grpc_operation


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

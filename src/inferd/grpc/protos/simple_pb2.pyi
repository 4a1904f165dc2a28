from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class PredictRequest(_message.Message):
    __slots__ = ("inputs", "model_version", "model_name")
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedScalarFieldContainer[float]
    model_version: str
    model_name: str
    def __init__(self, inputs: _Optional[_Iterable[float]] = ..., model_version: _Optional[str] = ..., model_name: _Optional[str] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("predictions", "model_version", "latency_ms", "error", "code")
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedScalarFieldContainer[float]
    model_version: str
    latency_ms: float
    error: str
    code: int
    def __init__(self, predictions: _Optional[_Iterable[float]] = ..., model_version: _Optional[str] = ..., latency_ms: _Optional[float] = ..., error: _Optional[str] = ..., code: _Optional[int] = ...) -> None: ...

"""gRPC server reflection (``grpc.reflection.v1alpha``), answered from inferd's descriptor pool.

What grpcurl and other reflection clients ask: the served services, and the file that
defines a name, a file name or an extension, with the files it depends on. A name the
pool does not know gets an ``error_response`` (NOT_FOUND) on the stream, and a message
that does not parse one with INVALID_ARGUMENT; the stream goes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import TypeAlias

import grpc
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pool import DescriptorPool

from inferd.grpc.protos import POOL, reflection_pb2
from inferd.grpc.register import Context, Malformed

Request: TypeAlias = reflection_pb2.ServerReflectionRequest
Response: TypeAlias = reflection_pb2.ServerReflectionResponse

#: The service's full name, as ``list_services`` reports it.
SERVICE_NAME = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name


def _with_dependencies(file: FileDescriptor) -> Response:
    """The file first, then every file it imports (transitively), each once."""
    ordered: list[FileDescriptor] = []
    pending = [file]
    while pending:
        current = pending.pop(0)
        if current.name not in {f.name for f in ordered}:
            ordered.append(current)
            pending.extend(current.dependencies)
    return reflection_pb2.ServerReflectionResponse(
        file_descriptor_response=reflection_pb2.FileDescriptorResponse(
            file_descriptor_proto=[f.serialized_pb for f in ordered]
        )
    )


class ReflectionServicer:
    def __init__(self, service_names: Iterable[str], pool: DescriptorPool = POOL) -> None:
        self._names = sorted(service_names)
        self._pool = pool
        #: Request field -> its answer; a lookup the pool cannot do raises KeyError.
        self._answers: dict[str, Callable[[Request], Response]] = {
            "file_by_filename": lambda r: _with_dependencies(
                pool.FindFileByName(r.file_by_filename)
            ),
            "file_containing_symbol": lambda r: _with_dependencies(
                pool.FindFileContainingSymbol(r.file_containing_symbol)
            ),
            "file_containing_extension": self._file_containing_extension,
            "all_extension_numbers_of_type": self._extension_numbers,
            "list_services": self._list_services,
        }

    async def ServerReflectionInfo(
        self, requests: AsyncIterator[Request | Malformed], context: Context
    ) -> AsyncIterator[Response]:
        async for request in requests:
            if isinstance(request, Malformed):
                yield _error(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            else:
                yield self._answer(request)

    def _answer(self, request: Request) -> Response:
        kind = request.WhichOneof("message_request")
        answer = self._answers.get(kind or "")
        if answer is None:
            reply = _error(grpc.StatusCode.UNIMPLEMENTED, "no request in the message")
        else:
            try:
                reply = answer(request)
            except KeyError:
                reply = _error(grpc.StatusCode.NOT_FOUND, f"{kind}: not found")
        reply.valid_host = request.host
        reply.original_request.CopyFrom(request)
        return reply

    def _file_containing_extension(self, request: Request) -> Response:
        wanted = request.file_containing_extension
        message = self._pool.FindMessageTypeByName(wanted.containing_type)
        extension = self._pool.FindExtensionByNumber(message, wanted.extension_number)
        return _with_dependencies(self._pool.FindFileContainingSymbol(extension.full_name))

    def _extension_numbers(self, request: Request) -> Response:
        message = self._pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
        numbers = sorted(e.number for e in self._pool.FindAllExtensions(message))
        return reflection_pb2.ServerReflectionResponse(
            all_extension_numbers_response=reflection_pb2.ExtensionNumberResponse(
                base_type_name=message.full_name, extension_number=numbers
            )
        )

    def _list_services(self, _: Request) -> Response:
        services = [reflection_pb2.ServiceResponse(name=name) for name in self._names]
        return reflection_pb2.ServerReflectionResponse(
            list_services_response=reflection_pb2.ListServiceResponse(service=services)
        )


def _error(code: grpc.StatusCode, message: str) -> Response:
    return reflection_pb2.ServerReflectionResponse(
        error_response=reflection_pb2.ErrorResponse(error_code=code.value[0], error_message=message)
    )

"""What a pure-Python HTTP/2 stack costs per unary gRPC call, on the server's side.

Could inferd answer unary gRPC calls on its own HTTP/2 connections instead of grpc.aio's
(whose core takes about 660 us of server CPU per tiny ModelInfer call, against about 120
us for a whole REST binary request)? This times the `h2` library's part of a unary call,
in process and without sockets: a client connection frames 64 calls at a time (HEADERS
and a DATA frame of a gRPC message the size of a tiny ModelInfer), the server connection
parses them and answers each with HEADERS, DATA and trailers. Only the server
connection's work is timed; no protobuf, no model, no system call.

`h2` is not one of inferd's dependencies (this decided whether it should be one):

    .venv/bin/pip install h2 && .venv/bin/python benchmarks/h2_cost.py
"""

from __future__ import annotations

import struct
import time
from typing import Final

import h2.config
import h2.connection
import h2.events

#: A gRPC message frame (no compression, 4-byte length) the size of a tiny ModelInfer
#: request, and of its answer.
REQUEST: Final = struct.pack(">BI", 0, 60) + b"x" * 60
ANSWER: Final = struct.pack(">BI", 0, 40) + b"y" * 40
HEADERS: Final = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/inference.GRPCInferenceService/ModelInfer"),
    (":authority", "127.0.0.1:8001"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]


def server_us_per_call(calls: int = 20_000, streams: int = 64) -> float:
    """Microseconds of the server connection's work per unary call."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    server.data_to_send()
    spent = 0.0
    for _ in range(calls // streams):
        for _ in range(streams):
            stream = client.get_next_available_stream_id()
            client.send_headers(stream, HEADERS)
            client.send_data(stream, REQUEST, end_stream=True)
        wire = client.data_to_send()
        start = time.perf_counter()
        for event in server.receive_data(wire):
            if isinstance(event, h2.events.DataReceived):
                server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                stream = event.stream_id
                server.send_headers(
                    stream, [(":status", "200"), ("content-type", "application/grpc")]
                )
                server.send_data(stream, ANSWER)
                server.send_headers(stream, [("grpc-status", "0")], end_stream=True)
        answers = server.data_to_send()
        spent += time.perf_counter() - start
        for event in client.receive_data(answers):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        server.receive_data(client.data_to_send())  # the client's window updates
        server.data_to_send()
    return spent / (calls // streams * streams) * 1e6


def main() -> None:
    for round_ in range(1, 4):
        print(f"round {round_}: h2, server side: {server_us_per_call():.0f} us per unary call")


if __name__ == "__main__":
    main()

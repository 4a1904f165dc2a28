"""The gRPC transport: Open Inference Protocol (Triton-compatible) and the simple API."""

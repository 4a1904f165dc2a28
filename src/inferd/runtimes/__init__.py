"""Runtimes: one interface over TorchScript, ONNX Runtime and plain Python models."""

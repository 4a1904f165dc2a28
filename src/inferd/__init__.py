"""inferd: a production inference server speaking the Open Inference Protocol."""

__version__ = "0.1.0"

"""A streaming model: the words of a text, one partial answer per word.

``predict`` is a generator, so the version is decoupled: each ``yield`` is sent to the
client as soon as it is made (Server-Sent Events, gRPC ModelStreamInfer, WebSocket).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray[Any, Any]]


class Model:
    def predict(self, inputs: Arrays) -> Iterator[Arrays]:
        text = inputs["text_input"][0].decode()
        for word in text.split():
            time.sleep(0.05)  # stands in for the work of producing the next token
            yield {"text_output": np.array([word.encode()], dtype=object)}

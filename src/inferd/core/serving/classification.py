"""Triton's classification extension: an output requested with ``classification: N``
comes back as the N highest values of each row, as BYTES ``"score:index[:label]"``.

Labels come from the file an output names with ``label_filename`` in model.yaml (one label
per line, in the model folder), read when the version loads. A batching model is
classified row by row (the answer's shape is ``[batch, N]``), any other over all of its
elements (``[N]``). N larger than a row has elements gives every element.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from inferd.core.messages import RequestedOutput
from inferd.errors import ConfigError, InvalidArgument, clip
from inferd.types import Tensor

#: The request parameter that asks for classification.
PARAMETER: Final = "classification"
#: The output parameters inferd acts on (``binary_data`` is REST's, read by its encoder;
#: ``shared_memory_*`` are the system shared memory extension's, read by the transports).
OUTPUT_PARAMETERS: Final = frozenset(
    {
        "binary_data",
        PARAMETER,
        "shared_memory_region",
        "shared_memory_byte_size",
        "shared_memory_offset",
    }
)
#: Most labels a label file may hold, and longest label.
MAX_LABELS: Final = 1 << 20
MAX_LABEL_CHARS: Final = 1024


def requested(outputs: Sequence[RequestedOutput]) -> dict[str, int]:
    """The outputs that ask for classification and their class count; an output
    parameter inferd does not act on is refused."""
    counts: dict[str, int] = {}
    for output in outputs:
        params = output.parameters
        if not params:
            continue
        unknown = params.keys() - OUTPUT_PARAMETERS
        if unknown:
            raise InvalidArgument(
                f"output '{clip(output.name)}': parameter(s) {clip(sorted(unknown))} are not "
                f"supported; inferd acts on {sorted(OUTPUT_PARAMETERS)}"
            )
        count = params.get(PARAMETER)
        if count is None:
            continue
        if type(count) is not int or count < 1:
            raise InvalidArgument(
                f"output '{clip(output.name)}': classification must be a positive integer "
                f"(the number of classes), got {clip(repr(count))}"
            )
        counts[output.name] = count
    return counts


def classify(
    outputs: list[Tensor],
    counts: Mapping[str, int],
    labels: Mapping[str, Sequence[str]],
    batching: bool,
) -> list[Tensor]:
    """``outputs`` with each one named in ``counts`` replaced by its top classes."""
    return [
        _classified(t, counts[t.name], labels.get(t.name, ()), batching) if t.name in counts else t
        for t in outputs
    ]


def _classified(tensor: Tensor, count: int, labels: Sequence[str], batching: bool) -> Tensor:
    if tensor.datatype in ("BYTES", "BOOL"):
        raise InvalidArgument(
            f"output '{tensor.name}' is {tensor.datatype}; classification needs a numeric output"
        )
    data = tensor.data
    rows = data.reshape(data.shape[0], -1) if batching and data.ndim else data.reshape(1, -1)
    k = min(count, rows.shape[1])
    # Highest first; among equal values the lower index first (a stable sort of -x).
    order = np.argsort(-rows.astype(np.float64), axis=1, kind="stable")[:, :k]
    out = np.empty(order.shape, dtype=object)
    for r, indices in enumerate(order):
        for c, index in enumerate(indices.tolist()):
            text = f"{float(rows[r, index]):f}:{index}"
            if index < len(labels):
                text = f"{text}:{labels[index]}"
            out[r, c] = text.encode()
    shaped = out if batching and data.ndim else out.reshape(k)
    return Tensor(tensor.name, "BYTES", shaped, tensor.parameters)


def read_labels(model_folder: Path, outputs: Sequence[Any], config_file: str) -> dict[str, Any]:
    """Each output's labels, from the ``label_filename`` model.yaml gives it: a file name
    (no folders) in the model folder, one label per line."""
    labels: dict[str, tuple[str, ...]] = {}
    for output in outputs:
        name = getattr(output, "label_filename", None)
        if name is None:
            continue
        path = model_folder / name
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{config_file}: output '{output.name}': label_filename '{name}' cannot be "
                f"read from the model folder ({getattr(exc, 'strerror', None) or 'not UTF-8'})"
            ) from exc
        lines = tuple(text.splitlines())
        if len(lines) > MAX_LABELS or any(len(line) > MAX_LABEL_CHARS for line in lines):
            raise ConfigError(
                f"{config_file}: output '{output.name}': '{name}' holds more than "
                f"{MAX_LABELS} labels or a label longer than {MAX_LABEL_CHARS} characters"
            )
        labels[output.name] = lines
    return labels

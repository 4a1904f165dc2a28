"""What the prediction cache keeps of an answer, and what that takes in the process."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from inferd.core.cache_entry import kept
from inferd.core.storage import MemoryStore
from inferd.types import Tensor


@pytest.mark.parametrize(
    "outputs",
    [
        [Tensor("output", "FP32", np.ones((64, 3), np.float32))],  # a tiny model's row
        [Tensor("y", "FP32", np.ones((64, 1000), np.float32))],  # 4 kB a row
        [  # two outputs, one of them BYTES
            Tensor("label", "BYTES", np.array([[b"positive"]] * 64, dtype=object)),
            Tensor("score", "FP64", np.ones((64, 2), np.float64)),
        ],
    ],
    ids=["tiny", "wide", "bytes"],
)
def test_the_store_counts_what_its_entries_take(outputs: list[Tensor]) -> None:
    """``cache.max_bytes`` bounds memory: what a store of kept answers counts is within
    20 % of what the process allocated for them (traced), whatever the answers' size."""
    store = MemoryStore(max_bytes=1 << 40)
    count = 3000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            row = i % 64  # one row of a batch's outputs, as an answer is
            answer = [Tensor(t.name, t.datatype, t.data[row : row + 1]) for t in outputs]
            store.put(f"inferd:cache:m:0123456789abcdef:{i:064x}", *kept(answer), 300.0)
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.8 <= store.bytes / taken <= 1.2, (store.bytes / count, taken / count)


def test_a_kept_answer_is_a_read_only_copy() -> None:
    batch = np.arange(6, dtype=np.float32).reshape(2, 3)
    (held,), _ = kept([Tensor("y", "FP32", batch[1:2])])
    name, datatype, array = held
    batch[1, 0] = -1.0
    assert (name, datatype, array.tolist()) == ("y", "FP32", [[3.0, 4.0, 5.0]])
    with pytest.raises(ValueError, match="read-only"):
        array[0, 0] = 1.0

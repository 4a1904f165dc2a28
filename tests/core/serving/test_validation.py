"""Releasing decoded inputs: large object arrays emptied a slice at a time, when ours."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from inferd.core.serving.validation import release_inputs
from inferd.jsondata import SLICE

#: For each Element freed: whether the array under watch was still alive then.
FREED_WHILE_ARRAY_ALIVE: list[bool] = []
WATCHED: list[weakref.ref[np.ndarray[Any, Any]]] = []


class Element:
    def __del__(self) -> None:
        FREED_WHILE_ARRAY_ALIVE.append(WATCHED[-1]() is not None)


def watched_objects(count: int) -> np.ndarray[Any, Any]:
    FREED_WHILE_ARRAY_ALIVE.clear()
    array = np.empty(count, dtype=object)
    array[:] = [Element() for _ in range(count)]
    WATCHED.append(weakref.ref(array))
    return array


def test_an_object_array_only_the_inputs_hold_is_emptied_before_it_is_freed() -> None:
    count = 2 * SLICE + 1
    arrays = {"s": watched_objects(count)}
    release_inputs(arrays)
    assert arrays == {} and WATCHED[-1]() is None
    # Freed slice by slice while the array lived, not all at once as the array was freed.
    assert len(FREED_WHILE_ARRAY_ALIVE) == count and all(FREED_WHILE_ARRAY_ALIVE)


def test_an_array_held_elsewhere_keeps_its_elements() -> None:
    kept = watched_objects(2 * SLICE + 1)
    arrays = {"s": kept}
    release_inputs(arrays)
    assert arrays == {} and FREED_WHILE_ARRAY_ALIVE == []
    assert all(isinstance(item, Element) for item in kept)


def test_small_arrays_are_only_let_go() -> None:
    arrays = {"s": watched_objects(3)}
    release_inputs(arrays)
    assert arrays == {} and FREED_WHILE_ARRAY_ALIVE == [False] * 3

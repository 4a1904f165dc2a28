"""Large JSON bodies parsed in a worker process: the same document, its data read."""

from __future__ import annotations

import numpy as np
import pytest

from inferd.errors import InvalidArgument
from inferd.http.jsonwork import JsonParser, read_tensor_data
from inferd.jsondata import JsonData, cast


def test_tensor_data_is_read_where_decoders_look_for_it() -> None:
    v2 = read_tensor_data({"inputs": [{"name": "x", "data": [1, 2]}, {"name": "y"}], "id": "a"})
    assert isinstance(v2["inputs"][0]["data"], JsonData)
    assert v2["inputs"][1] == {"name": "y"} and v2["id"] == "a"
    simple = read_tensor_data({"batch": [[1, 2]], "inputs": [3]})
    assert isinstance(simple["batch"], JsonData) and isinstance(simple["inputs"], JsonData)
    assert read_tensor_data([1, 2]) == [1, 2]


async def test_large_bodies_are_parsed_in_a_worker() -> None:
    parser = JsonParser(offload_bytes=16)
    try:
        small = await parser.parse(b'{"a": [1]}')
        assert small == {"a": [1]}  # under the threshold: parsed here, left as is
        doc = await parser.parse(b'{"inputs": [{"name": "x", "data": [[1, 2], [3, 4]]}]}')
        data = doc["inputs"][0]["data"]
        assert isinstance(data, JsonData)
        np.testing.assert_array_equal(cast("x", "INT32", (2, 2), data), [[1, 2], [3, 4]])
        with pytest.raises(InvalidArgument, match="malformed JSON"):
            await parser.parse(b'{"inputs": [1, 2, 3, 4, 5, 6, 7, 8')
    finally:
        parser.close()

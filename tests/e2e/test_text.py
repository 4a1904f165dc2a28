"""minilm served for real: sentences in over REST, embeddings out, batched by the server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from inferd.core.store.model_config import ModelConfig
from inferd.core.store.versions import runtime_options
from inferd.runtimes.base import runtime_class
from tests.conftest import ServerProcess

SENTENCES = [
    "The cat sits on the mat.",
    "A feline is resting on a rug.",
    "Quarterly revenue beat expectations.",
    "Hi",
    "Dynamic batching pads every row of a batch to the longest row in it, " * 3,
]


@pytest.fixture(scope="module")
def text_server(text_repo: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(text_repo, "--grpc-port", "0")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference(text_repo: Path) -> dict[str, np.ndarray[Any, Any]]:
    """Each sentence embedded alone, in-process."""
    folder = text_repo / "minilm"
    config = ModelConfig.model_validate(yaml.safe_load((folder / "model.yaml").read_text()))
    runtime = runtime_class("python")(runtime_options(config, folder / "1" / "model.py"))
    runtime.load()
    try:
        return {
            s: runtime.infer({"text": np.array([s.encode()], dtype=object)})["embedding"][0]
            for s in SENTENCES
        }
    finally:
        runtime.unload()


def body(*sentences: str) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [len(sentences)], "data": sentences}
        ]
    }


def test_two_sentences_give_two_embeddings(
    text_server: ServerProcess, reference: dict[str, np.ndarray[Any, Any]]
) -> None:
    answer = httpx.post(
        f"{text_server.url}/v2/models/minilm/infer", json=body(*SENTENCES[:2]), timeout=30
    )
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("embedding", "FP32", [2, 384])
    got = np.asarray(output["data"], dtype=np.float32).reshape(2, 384)
    np.testing.assert_allclose(got[0], reference[SENTENCES[0]], atol=1e-5)
    np.testing.assert_allclose(got[1], reference[SENTENCES[1]], atol=1e-5)
    assert float(got[0] @ got[1]) > 0.5


def test_concurrent_rows_of_every_length_get_their_own_embedding(
    text_server: ServerProcess, reference: dict[str, np.ndarray[Any, Any]]
) -> None:
    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=text_server.url, timeout=30) as client:
            requests = [client.post("/v2/models/minilm/infer", json=body(s)) for s in SENTENCES * 4]
            return await asyncio.gather(*requests)

    for sentence, answer in zip(SENTENCES * 4, asyncio.run(send_all()), strict=True):
        assert answer.status_code == 200, answer.text
        got = np.asarray(answer.json()["outputs"][0]["data"], dtype=np.float32)
        np.testing.assert_allclose(got, reference[sentence], atol=1e-5)


def test_a_number_where_text_belongs_is_refused(text_server: ServerProcess) -> None:
    wrong = {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}
    answer = httpx.post(f"{text_server.url}/v2/models/minilm/infer", json=wrong, timeout=30)
    assert answer.status_code == 400
    assert "text" in answer.json()["error"]

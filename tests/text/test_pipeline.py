"""minilm as a pipeline (tokenizer -> ONNX encoder -> pooling, each a served model) gives
the single model's embeddings, and its encoder step batches rows of concurrent requests."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import NodeFactory, asgi_client
from tests.core.serving.test_pipeline_docs import yaml_blocks
from tests.text.test_model import SENTENCES

MODELS = ("minilm", "minilm-tokenizer", "minilm-encoder", "minilm-pooling", "minilm-pipeline")
#: Sentences of 5 to 14 tokens: one padded length (16), so they can meet in a batch.
SHORT = [
    f"Sentence number {n} is about {'cats' if n % 2 else 'the weather'} today." for n in range(32)
]


@pytest.fixture(scope="module")
def minilm_repo(text_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The minilm models of `inferd example --text` alone (hard links: no copy), and
    ``minilm-ensemble``: docs/pipelines.md's Triton form of the pipeline."""
    root = tmp_path_factory.mktemp("minilm-pipeline")
    for name in MODELS:
        shutil.copytree(text_repo / name, root / name, copy_function=os.link)
    (root / "minilm-ensemble").mkdir()
    (root / "minilm-ensemble" / "model.yaml").write_text(yaml_blocks()[1])
    return root


def body(*texts: str) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": list(texts)}
        ]
    }


def embeddings(answer: Any) -> np.ndarray[Any, Any]:
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    return np.array(output["data"], dtype=np.float32).reshape(output["shape"])


async def test_the_pipeline_equals_the_single_model(
    minilm_repo: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(minilm_repo)
    async with await asgi_client(node) as client:
        metadata = (await client.get("/v2/models/minilm-pipeline")).json()
        assert metadata["platform"] == "ensemble"
        assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        assert metadata["outputs"] == [
            {"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}
        ]
        single = embeddings(await client.post("/v2/models/minilm/infer", json=body(*SENTENCES)))
        piped = embeddings(
            await client.post("/v2/models/minilm-pipeline/infer", json=body(*SENTENCES))
        )
        np.testing.assert_allclose(piped, single, atol=1e-5)
        triton = await client.post("/v2/models/minilm-ensemble/infer", json=body(*SENTENCES))
        np.testing.assert_allclose(embeddings(triton), single, atol=1e-5)
        for n, sentence in enumerate(SENTENCES):  # alone, padded to its own length
            alone = await client.post("/v2/models/minilm-pipeline/infer", json=body(sentence))
            np.testing.assert_allclose(embeddings(alone)[0], single[n], atol=1e-5)


async def test_under_32_concurrent_clients_the_encoder_step_batches(
    minilm_repo: Path, node_factory: NodeFactory
) -> None:
    node = node_factory(minilm_repo)
    async with await asgi_client(node) as client:
        single = embeddings(await client.post("/v2/models/minilm/infer", json=body(*SHORT)))
        answers = await asyncio.gather(
            *(client.post("/v2/models/minilm-pipeline/infer", json=body(s)) for s in SHORT)
        )
        for n, answer in enumerate(answers):
            np.testing.assert_allclose(embeddings(answer)[0], single[n], atol=1e-5)
        encoder = (await client.get("/v2/models/minilm-encoder/stats")).json()["model_stats"][0]
        sizes = [b["batch_size"] for b in encoder["batch_stats"]]
        assert max(sizes) > 1, sizes
        assert encoder["inference_count"] == 32
        assert encoder["execution_count"] < 32
        pipeline = (await client.get("/v2/models/minilm-pipeline/stats")).json()["model_stats"][0]
        steps = pipeline["pipeline"]["steps"]
        assert list(steps) == ["tokenize", "encode", "pool"]
        assert all(s["success"]["count"] == 32 for s in steps.values())

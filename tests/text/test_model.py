"""minilm through the Python runtime, against the package's own model run by
sentence-transformers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from inferd.core.store.model_config import ModelConfig
from inferd.core.store.versions import runtime_options
from inferd.runtimes.base import Runtime, runtime_class
from inferd.text.build import package_dir

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The stock market fell sharply today, worrying investors everywhere.",
    "",
    "Ünïcödé text, emoji 🙂 and punctuation!?",
]


def texts(*items: str) -> np.ndarray[Any, Any]:
    return np.array([s.encode() for s in items], dtype=object)


@pytest.fixture(scope="module")
def minilm(text_repo: Path) -> Iterator[Runtime]:
    folder = text_repo / "minilm"
    config = ModelConfig.model_validate(yaml.safe_load((folder / "model.yaml").read_text()))
    runtime = runtime_class("python")(runtime_options(config, folder / "1" / "model.py"))
    runtime.load()
    yield runtime
    runtime.unload()


def embed(runtime: Runtime, *items: str) -> np.ndarray[Any, Any]:
    out: np.ndarray[Any, Any] = runtime.infer({"text": texts(*items)})["embedding"]
    return out


def test_embeddings_equal_the_package_model(minilm: Runtime) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(package_dir()), device="cpu").encode(SENTENCES)
    got = embed(minilm, *SENTENCES)
    assert got.dtype == np.float32
    assert got.shape == (len(SENTENCES), 384)
    np.testing.assert_allclose(got, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_a_similar_pair_scores_higher_than_an_unrelated_pair(minilm: Runtime) -> None:
    eating, bread, market = embed(minilm, *SENTENCES[:3])
    assert float(eating @ bread) > 0.6
    assert float(eating @ market) < 0.2


def test_a_row_is_the_same_alone_and_padded_in_a_batch(minilm: Runtime) -> None:
    alone = embed(minilm, "short")
    batched = embed(minilm, "short", "a much longer sentence that makes the batch pad the first")
    np.testing.assert_allclose(batched[0], alone[0], atol=1e-5)


def test_a_batch_of_many_lengths_keeps_its_order(minilm: Runtime) -> None:
    rows = [s for s in SENTENCES * 5]  # 25 rows: several chunks, lengths interleaved
    alone = np.stack([embed(minilm, s)[0] for s in SENTENCES])
    np.testing.assert_allclose(embed(minilm, *rows), np.tile(alone, (5, 1)), atol=1e-5)


def test_text_past_256_tokens_is_cut(minilm: Runtime) -> None:
    start = " ".join(["word"] * 254)
    long = embed(minilm, start + " alpha beta gamma", start + " delta epsilon zeta")
    np.testing.assert_allclose(long[0], long[1], atol=1e-6)  # only the first 254 words count


def test_bytes_that_are_not_utf8_are_replaced(minilm: Runtime) -> None:
    bad = minilm.infer({"text": np.array([b"caf\xe9"], dtype=object)})["embedding"]
    np.testing.assert_allclose(bad, embed(minilm, "caf\ufffd"), atol=1e-6)

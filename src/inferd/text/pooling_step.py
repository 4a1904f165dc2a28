"""The last step of the minilm pipeline: the encoder's token embeddings in, one
L2-normalised sentence embedding out (what sentence-transformers applies after BERT).

Copied into ``minilm-pooling``'s version folder and served by the Python runtime: the
mean of the token embeddings over the tokens whose attention mask is 1, divided by its
L2 norm.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Model:
    def predict(self, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        tokens = inputs["token_embeddings"]  # [B, T, 384]
        mask = inputs["attention_mask"].astype(np.float32)[:, :, None]  # [B, T, 1]
        mean = (tokens * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        norm = np.sqrt((mean * mean).sum(axis=1, keepdims=True))
        return {"embedding": (mean / np.maximum(norm, 1e-12)).astype(np.float32)}

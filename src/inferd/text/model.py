"""Sentence embeddings: one string per row in, one L2-normalised FP32 [384] vector out.

This file is copied into the model's version folder beside ``tokenizer.json`` and
``encoder.onnx`` and served by the Python runtime. Each batch is tokenised as a whole and
padded to its longest row, so rows of any length batch together; the encoder (BERT, mean
pooling over real tokens, L2 normalisation) is one ONNX Runtime session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

#: all-MiniLM-L6-v2 was trained on inputs of at most 256 tokens; longer rows are cut.
MAX_TOKENS: Final = 256
HERE: Final = Path(__file__).resolve().parent


class Model:
    def load(self) -> None:
        tokenizer = Tokenizer.from_file(str(HERE / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self.tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(HERE / "encoder.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def predict(self, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        # Bytes that are not UTF-8 become U+FFFD rather than failing the whole batch,
        # which may hold other clients' rows.
        texts = [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in inputs["text"].reshape(-1)
        ]
        encodings = self.tokenizer.encode_batch(texts)
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        attention_mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        (embedding,) = self.session.run(
            ["embedding"], {"input_ids": input_ids, "attention_mask": attention_mask}
        )
        return {"embedding": embedding}

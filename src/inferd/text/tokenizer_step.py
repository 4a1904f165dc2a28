"""The first step of the minilm pipeline: strings in, token ids and attention mask out.

Copied into ``minilm-tokenizer``'s version folder beside ``tokenizer.json`` and served by
the Python runtime. A batch's rows are padded together to a bucket length (16, 32, 64,
128 or 256 tokens): the encoder step batches requests whose arrays have the same shape,
so a few lengths let rows of different sentences meet there, at the cost of some padding
(masked out of attention and out of the mean).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
from tokenizers import Tokenizer

#: all-MiniLM-L6-v2 was trained on inputs of at most 256 tokens; longer rows are cut.
MAX_TOKENS: Final = 256
#: The padded lengths.
BUCKETS: Final = (16, 32, 64, 128, 256)
HERE: Final = Path(__file__).resolve().parent


class Model:
    def load(self) -> None:
        tokenizer = Tokenizer.from_file(str(HERE / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        tokenizer.no_padding()
        self.tokenizer = tokenizer

    def predict(self, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        # Bytes that are not UTF-8 become U+FFFD rather than failing the whole batch.
        texts = [
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in inputs["text"].reshape(-1)
        ]
        encodings = self.tokenizer.encode_batch(texts)
        longest = max(len(e.ids) for e in encodings)
        width = next(b for b in BUCKETS if b >= longest)
        input_ids = np.zeros((len(texts), width), dtype=np.int64)
        attention_mask = np.zeros_like(input_ids)
        for row, encoding in enumerate(encodings):
            input_ids[row, : len(encoding.ids)] = encoding.ids
            attention_mask[row, : len(encoding.ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

"""A text model: one UTF-8 text per request row in, one JSON answer per row out.

The answer is ``{"label": "positive" | "negative" | "neutral", "score": s, "words": n}``
with ``s`` the mean polarity of the known words in [-1, 1]. The word lists are the model's
weights (``lexicon.json`` beside this file); ``parameters.neutral_below`` in model.yaml
sets how far from 0 a score must be to count as positive or negative.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from inferd.runtimes.python_api import LoadContext

WORD: Final = re.compile(r"[a-z']+")


class Model:
    def load(self, context: LoadContext) -> None:
        lexicon = json.loads((context.folder / "lexicon.json").read_text())
        self.polarity = {word: 1.0 for word in lexicon["positive"]}
        self.polarity.update({word: -1.0 for word in lexicon["negative"]})
        self.neutral_below = float(context.parameters.get("neutral_below", 0.0))

    def decode_request(self, request: dict[str, Any]) -> list[str]:
        text: bytes = request["text"]  # one BYTES element
        return WORD.findall(text.decode("utf-8", errors="replace").lower())

    def predict(self, batch: list[list[str]]) -> list[dict[str, Any]]:
        return [self._score(words) for words in batch]

    def _score(self, words: list[str]) -> dict[str, Any]:
        hits = [self.polarity[word] for word in words if word in self.polarity]
        score = sum(hits) / len(hits) if hits else 0.0
        label = "neutral"
        if abs(score) > self.neutral_below:
            label = "positive" if score > 0 else "negative"
        return {"label": label, "score": round(score, 4), "words": len(words)}

    def encode_response(self, output: dict[str, Any]) -> dict[str, Any]:
        return {"result": output}  # a BYTES output: the dict goes out as JSON

"""The naive endpoint: what a user writes by hand with FastAPI and torch.

A pydantic body ``{"inputs": [floats]}`` becomes a ``torch.tensor``, the model runs under
``torch.no_grad()`` and the answer is ``{"predictions": [...]}``. The endpoint is
``async def`` and calls the model inline, so requests run one at a time; there is no
batching. uvicorn's defaults pick uvloop and httptools; the access log is off, as in
every contestant.

    python benchmarks/naive_app.py MODEL.pt --port 8000
"""

from __future__ import annotations

import argparse

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class PredictRequest(BaseModel):
    inputs: list[float]


class PredictResponse(BaseModel):
    predictions: list[float]


def create_app(model_path: str) -> FastAPI:
    torch.set_num_threads(1)
    model = torch.jit.load(model_path)
    model.eval()
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: PredictRequest) -> PredictResponse:
        x = torch.tensor([request.inputs])
        with torch.no_grad():
            y = model(x)
        return PredictResponse(predictions=y[0].tolist())

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="a TorchScript file")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.model),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

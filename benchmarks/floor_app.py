"""The HTTP floor: a bare ASGI app that reads the body, parses it with orjson and answers
fixed JSON. No routing, no validation, no model: what any Python server pays per request.

    python benchmarks/floor_app.py --port 8000
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson
import uvicorn

ANSWER = orjson.dumps(
    {
        "model_name": "floor",
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [1, 2], "data": [0.0, 0.0]}],
    }
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    if body:
        orjson.loads(body)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

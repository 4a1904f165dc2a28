"""Makes docs/dashboard.png: a server with a split model under a rollout and a shadow, a
cached model and tiny, under traffic, seen by headless Chromium (selenium, Debian's
chromedriver). Run from the repository root with the example repository built:

    inferd example build/models
    python -m tests.http.dashboard.screenshot build/models docs/dashboard.png
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from inferd.client import Client
from tests.client.conftest import IDENTITY, write_model, write_split
from tests.conftest import clean_environment, free_port, wait_until

CACHED = (
    "runtime: python\ncache: {enabled: true}\n"
    "inputs: [{name: in_x, datatype: FP32, shape: [-1, 2]}]\n"
    "outputs: [{name: out_x, datatype: FP32, shape: [-1, 2]}]\n"
)


def traffic(url: str, until: float) -> None:
    with Client(url) as client:
        n = 0
        while time.monotonic() < until:
            client.infer("tiny", {"input": np.random.rand(1 + n % 4, 4).astype(np.float32)})
            client.infer("split", {"x": np.zeros(1, np.float32)}, routing_key=f"user-{n}")
            client.infer("cached", {"in_x": np.full((1, 2), n % 5, np.float32)})
            n += 1


def main(example: Path, out: Path) -> None:
    repo = Path(tempfile.mkdtemp())
    for name in ("tiny", "sentiment"):
        shutil.copytree(example / name, repo / name)
    write_split(repo)
    write_model(repo, "cached", IDENTITY, CACHED)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**clean_environment(), "INFERENCE_SERVER__ALLOW_LOCAL_ADMIN": "true"}
    command = [sys.executable, "-m", "inferd", "serve", str(repo), "--port", str(port)]
    server = subprocess.Popen([*command, "--grpc-port", "0", "--log-level", "warning"], env=env)
    try:
        wait_until(lambda: _ready(url), 60, "the server to answer")
        httpx.put(f"{url}/v2/models/split/shadow", json={"version": "2", "fraction": 0.5})
        until = time.monotonic() + 14
        threads = [threading.Thread(target=traffic, args=(url, until)) for _ in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        httpx.put(f"{url}/v2/models/split/rollout", json={"to": "2", "step_interval_s": 3600})
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
            options.add_argument(flag)
        driver = webdriver.Chrome(
            options=options, service=Service(executable_path=shutil.which("chromedriver"))
        )
        driver.get(f"{url}/dashboard")
        time.sleep(6)  # a few refreshes: rates need two reads
        driver.save_screenshot(str(out))
        driver.quit()
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(repo, ignore_errors=True)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main(Path(sys.argv[1]), Path(sys.argv[2]))

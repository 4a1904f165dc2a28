"""The dashboard in a real browser: Debian's headless Chromium driven by selenium through
Debian's chromedriver (nothing is downloaded), against real servers. It loads the page,
sees the example models, sends traffic and sees the numbers change; a server with keys
shows nothing without one, and the page shows the state once a key is typed in."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferd.client import Client
from inferd.gateway.keys import Scope, new_key
from tests.conftest import ServerProcess

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
if os.environ.get("CI") != "true" and (CHROMIUM is None or CHROMEDRIVER is None):
    pytest.skip(
        "needs Debian's chromium and chromium-driver (make system-deps)", allow_module_level=True
    )

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

INFER_KEY, INFER = new_key("viewer", Scope.INFER)
#: What the page shows where there is no figure yet (an en dash).
NO_VALUE = "\u2013"
#: Set to a path to keep the screenshot (docs/dashboard.png is made so).
SCREENSHOT = os.environ.get("INFERD_DASHBOARD_SCREENSHOT")


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    assert CHROMIUM is not None and CHROMEDRIVER is not None, "install chromium chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,760")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def cell(browser: webdriver.Chrome, table: str, model: str, column: str) -> str:
    """A cell's text, found and read in one step inside the page: the tables are rendered
    again on every update, so an element found first may be gone before its text is read."""
    selector = f'#{table} tr[data-model="{model}"][data-version="1"] .{column}'
    text = browser.execute_script(
        "const found = document.querySelector(arguments[0]); return found ? found.innerText : '';",
        selector,
    )
    return str(text).strip()


def wait(browser: webdriver.Chrome, condition: object, what: str, timeout: float = 30) -> None:
    WebDriverWait(browser, timeout, poll_frequency=0.1).until(
        lambda _: condition(),
        message=f"timed out waiting for {what}",  # type: ignore[operator]
    )


def test_the_page_shows_the_models_and_live_numbers(
    browser: webdriver.Chrome, live_server: ServerProcess
) -> None:
    browser.get(f"{live_server.url}/dashboard")
    wait(browser, lambda: cell(browser, "live", "tiny", "total") != "", "the live table")
    models = set(
        browser.execute_script(
            "return Array.from(document.querySelectorAll('#models tbody tr'),"
            " row => row.dataset.model);"
        )
    )
    assert {"tiny", "wide", "sentiment", "words"} <= models
    before = float(cell(browser, "live", "tiny", "total"))

    x = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)
    with Client(live_server.url) as client:
        for _ in range(40):
            client.infer("tiny", {"input": x})
    wait(
        browser,
        lambda: float(cell(browser, "live", "tiny", "total") or 0) >= before + 40,
        "the request count to move",
    )
    rates: list[str] = []

    def moving() -> bool:
        with Client(live_server.url) as client:
            for _ in range(20):
                client.infer("tiny", {"input": x})
        rates.append(cell(browser, "live", "tiny", "rps"))
        return rates[-1] not in ("", NO_VALUE) and float(rates[-1]) > 0

    wait(browser, moving, "a request rate above zero")
    assert cell(browser, "live", "tiny", "p99") not in ("", NO_VALUE)
    assert "READY" in browser.execute_script(
        "return document.querySelector('#models tr[data-model=\"tiny\"]').innerText;"
    )
    if SCREENSHOT:
        browser.save_screenshot(SCREENSHOT)


@pytest.fixture(scope="module")
def keyed_server(
    example_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("keyed")
    for name in ("sentiment", "words"):  # Python models: quick to load
        shutil.copytree(example_repo / name, repo / name)
    env = {"INFERENCE_SERVER__API_KEYS": INFER.line(), "INFERENCE_SERVER__REQUIRE_API_KEY": "true"}
    server = ServerProcess(repo, "--grpc-port", "0", env=env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_with_keys_on_the_page_shows_nothing_without_a_key(
    browser: webdriver.Chrome, keyed_server: ServerProcess
) -> None:
    browser.get(f"{keyed_server.url}/dashboard")
    form = browser.find_element(By.ID, "key-form")
    wait(browser, form.is_displayed, "the key form")
    assert not browser.find_element(By.ID, "content").is_displayed()
    body = browser.find_element(By.TAG_NAME, "body").text
    for name in ("sentiment", "words"):
        assert name not in body
    assert browser.find_elements(By.CSS_SELECTOR, "#models tbody tr") == []

    browser.find_element(By.ID, "key").send_keys(INFER_KEY)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait(
        browser, lambda: cell(browser, "models", "sentiment", "state").startswith("READY"), "models"
    )
    assert not form.is_displayed()
    assert "admin" in browser.find_element(By.ID, "hidden-parts").text  # no control part

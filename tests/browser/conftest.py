"""Browser tests: one headless Chromium for the session, a fresh controller (real local nodes) per test."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.panel import AXE, CHROMIUM, Panel, launch
from tests.controller_process import ControllerProcess
from tests.e2e.conftest import controller  # noqa: F401  (a fresh controller per test, as the e2e tests have)

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (Debian package chromium; `make system-deps`)", allow_module_level=True)


# Package scope, not session: Playwright's sync API keeps an event loop running in this thread while it is
# started, so every later test's asyncio.run() would fail ("cannot be called from a running event loop").
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    assert AXE.exists(), "axe-core is missing: run `make panel-deps`"
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def panel(browser: Browser, controller: ControllerProcess) -> Iterator[Panel]:
    """The panel of `controller` in a fresh browser context; fails the test if the page logged errors."""
    p = Panel.open(browser, controller.url)
    try:
        yield p
        p.assert_clean()
    finally:
        p.close()

"""Real headless Chromium (Debian's package, installed by deploy/setup.sh) driven by Playwright.

Playwright's own browser download is never used: the tests launch the system browser through
``executable_path``, so hospital and CI networks that only reach Debian's mirrors can run them. A browser that
does not start is a failure, never a skip: the portal is a product people use in a browser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = os.environ.get("HEALTHGOV_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("HEALTHGOV_SCREENSHOTS", ".state/screenshots"))


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def context(chromium: Browser, settings) -> Iterator[BrowserContext]:  # type: ignore[no-untyped-def]
    """A fresh profile per test (no cookies shared between people), in Guiyang's time zone and language."""
    ctx = chromium.new_context(base_url=settings.portal_url, locale="zh-CN", timezone_id="Asia/Shanghai",
                               viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(30_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture()
def page(context: BrowserContext) -> Page:
    return context.new_page()


def screenshot(page: Page, name: str) -> Path:
    """Keep what the page looked like: a failing layout is easier to see than to describe."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

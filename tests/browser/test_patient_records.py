"""The record in plain words, its downloads and a guardian's view of a child, in real Chromium, on a phone.

The page is read as a patient in Guiyang reads it: Chinese, 390 px wide, no sideways scrolling, axe-core finding
nothing serious; the PDF downloads through the page and the download shows up in the trail as an entry of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from services.portal.proxies import Proxies
from tests.browser.conftest import screenshot
from tests.conftest import first_patient, wait_for
from tests.integration.records.support import HYPERTENSION, condition, encounter, fresh_patient, ingest

PASSWORD = "correct horse battery staple"


def _accounts() -> Accounts:
    ps = PortalSettings()
    return Accounts(ps.store_url, PlatformKeys(ps.state_dir).portal_key())


@pytest.fixture(scope="module")
def family(loaded, settings, token) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """A parent and a child, each with a visit and a condition; the parent's account acts for the child."""
    out: dict[str, Any] = {}
    for who in ("parent", "child"):
        p = fresh_patient(first_patient())
        ingest(settings, token, p, encounter(p["id"], "2020-02-01T17:00:00Z"),
               condition(p["id"], HYPERTENSION, "2019-05-01"))
        out[who] = p["id"]
    out["username"] = "family-" + uuid.uuid4().hex[:8]
    accounts = _accounts()
    accounts.create(out["username"], PASSWORD, "patient", out["parent"])
    out["link"] = Proxies(accounts.engine, PlatformKeys(PortalSettings().state_dir).portal_key()).link(
        out["username"], out["child"], "王小明")
    return out


@pytest.fixture()
def phone(chromium: Browser, settings) -> Iterator[Page]:  # type: ignore[no-untyped-def]
    ctx = chromium.new_context(base_url=settings.portal_url, locale="zh-CN", timezone_id="Asia/Shanghai",
                               viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                               accept_downloads=True)
    ctx.set_default_timeout(30_000)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


def _sign_in(page: Page, username: str) -> None:
    page.goto("/")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form[action='/login'] button").click()
    page.wait_for_url("**/me")


def _fits_and_axe_is_clean(page: Page) -> None:
    widths = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{page.url} scrolls sideways at 390 px: {widths}"
    results = Axe().run(page)
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
               for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], serious


def test_the_record_reads_in_chinese_on_a_phone_and_the_pdf_download_is_in_the_trail(phone: Page, family) -> None:  # type: ignore[no-untyped-def]
    page = phone
    _sign_in(page, family["username"])
    page.get_by_role("link", name="用通俗的语言查看我的全部记录，或下载副本").click()
    expect(page.get_by_role("heading", name="我的记录（通俗版）")).to_be_visible()
    conditions = page.locator("#conditions")
    expect(conditions).to_contain_text("高血压")
    expect(conditions).to_contain_text("贵阳市第一人民医院")
    expect(page.locator("#visits")).to_contain_text("2020-02-02")  # 17:00 UTC is the next morning in Guiyang
    expect(page.locator("body")).not_to_contain_text(HYPERTENSION)
    screenshot(page, "zh-records")
    _fits_and_axe_is_clean(page)

    with page.expect_download() as download:
        page.get_by_role("link", name="可打印副本（PDF）").click()
    assert open(download.value.path(), "rb").read(5) == b"%PDF-"  # noqa: SIM115

    def listed() -> bool:
        page.goto("/me/access")
        return page.locator("ol.trail li", has_text="下载了您的记录副本").count() > 0

    wait_for(listed, 60, "the download in the trail")
    expect(page.locator("ol.trail li", has_text="下载了您的记录副本").first).to_contain_text("PDF")


def test_a_guardian_reads_the_childs_record_and_their_trail_on_a_phone(phone: Page, family) -> None:  # type: ignore[no-untyped-def]
    page = phone
    _sign_in(page, family["username"])
    expect(page.locator("#children")).to_contain_text("王小明")
    page.get_by_role("link", name="王小明 的记录", exact=True).click()
    expect(page.get_by_role("heading", name="王小明 的记录")).to_be_visible()
    expect(page.get_by_role("note")).to_contain_text("监护人")
    expect(page.locator("#conditions")).to_contain_text("高血压")
    screenshot(page, "zh-guardian-records")
    _fits_and_axe_is_clean(page)

    def listed() -> bool:
        page.goto(f"/for/{family['link']}/access")
        return page.locator("ol.trail li", has_text="您的监护人").count() > 0

    wait_for(listed, 60, "the guardian's view in the child's trail")
    expect(page.locator("ol.trail li", has_text="您的监护人").first).to_contain_text(family["username"])
    screenshot(page, "zh-guardian-trail")
    _fits_and_axe_is_clean(page)

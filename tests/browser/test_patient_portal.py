"""The patient portal as people in Guiyang use it: Chinese, on a phone, in real Chromium.

Each test makes the platform act first (a clinician's emergency read, hundreds of refused attempts, a consent)
and then reads the page as the patient does: in Chinese, with the trail newest first, every entry's proof
checked in the page, and nothing wider than a 390 px phone. axe-core checks the pages as rendered.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from tests.browser.conftest import screenshot
from tests.conftest import auth, first_patient, wait_for
from tests.integration.records.support import HYPERTENSION, condition, encounter, fresh_patient, ingest

PASSWORD = "correct horse battery staple"
EMERGENCY_REASON = "unconscious in ER"


def _accounts() -> Accounts:
    ps = PortalSettings()
    return Accounts(ps.store_url, PlatformKeys(ps.state_dir).portal_key())


def _patient(settings: Any, token: Any) -> dict[str, str]:
    """A patient of this test's own with a visit, a condition, an account; gy-hosp-001 treats them."""
    p = fresh_patient(first_patient())
    ingest(settings, token, p, encounter(p["id"], "2020-02-01T09:00:00Z"), condition(p["id"], HYPERTENSION,
                                                                                      "2019-05-01"))
    username = "zh-" + uuid.uuid4().hex[:8]
    _accounts().create(username, PASSWORD, "patient", p["id"])
    return {"id": p["id"], "username": username}


def _sign_in(page: Page, username: str) -> None:
    page.goto("/")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form[action='/login'] button").click()
    page.wait_for_url("**/me")


def _break_glass(settings: Any, token: Any, pid: str) -> str:
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}/$everything", timeout=60,
                  headers=auth(token("gy-hosp-002", sub="dr-li", purpose="ETREAT"),
                               **{"X-Break-Glass-Reason": EMERGENCY_REASON}))
    assert r.status_code == 200, r.text
    return r.headers["X-Healthgov-Event-Id"]


def test_a_patient_signs_in_in_chinese_and_the_language_choice_sticks(page: Page, loaded, settings,  # type: ignore[no-untyped-def]
                                                                       token) -> None:
    p = _patient(settings, token)
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.get_by_role("heading", name="登录")).to_be_visible()
    screenshot(page, "zh-sign-in")
    _sign_in(page, p["username"])
    expect(page.get_by_role("heading", name="给您的消息")).to_be_visible()
    expect(page.get_by_role("button", name="退出登录")).to_be_visible()
    expect(page.locator("#access")).to_contain_text("贵阳市第一人民医院")  # the hospital, by its Chinese name
    expect(page.locator("#access")).to_contain_text("北京时间")
    screenshot(page, "zh-patient-home")
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", name="Messages for you")).to_be_visible()
    page.goto("/me/access")  # the choice is remembered, not only for one page
    expect(page.get_by_role("heading", name="Who looked at my records")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("link", name="中文").click()
    expect(page.get_by_role("heading", name="谁查阅了我的记录")).to_be_visible()


def test_the_trail_pages_past_200_events_and_shows_a_break_glass_on_top_verified(page: Page, loaded,  # type: ignore[no-untyped-def]
                                                                                settings, token) -> None:
    p = _patient(settings, token)
    def read(_: int) -> int:  # gy-hosp-001 treats this patient; every token is used once
        clinician = auth(token("gy-hosp-001", sub="dr-zhang", purpose="TREAT"))
        return httpx.get(f"{settings.records_url}/fhir/Patient/{p['id']}", headers=clinician, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(read, range(210))) == {200}
    emergency = _break_glass(settings, token, p["id"])
    _sign_in(page, p["username"])

    def trail_has_it() -> bool:
        page.goto("/me/access")
        return page.locator("ol.trail li").first.get_attribute("class") == "emergency"

    wait_for(trail_has_it, 90, "the emergency read on top of the trail")
    top = page.locator("ol.trail li").first
    expect(top).to_contain_text("紧急访问（破窗）")
    expect(top).to_contain_text(EMERGENCY_REASON)
    expect(top).to_contain_text("dr-li")
    expect(top).to_contain_text("贵州省人民医院")
    expect(top.locator(".badge.verified")).to_have_text("✓ 已与签名日志核对无误")  # on the first look
    expect(top.locator(f"a[href='/receipts/{emergency}']")).to_be_visible()
    expect(top.get_by_role("link", name="下载贵州省人民医院此次访问的回执")).to_be_visible()  # named with its context
    total = int(page.locator("#trail-total").inner_text().split("共 ")[1].split(" ")[0])
    assert total >= 211  # the clinician's reads, the emergency read, the records sent
    expect(page.locator("ol.trail li")).to_have_count(20)
    screenshot(page, "zh-access-trail")

    with page.expect_download() as download:
        top.locator(f"a[href='/receipts/{emergency}/download']").click()
    receipt = json.loads(open(download.value.path(), encoding="utf-8").read())  # noqa: SIM115
    assert receipt["event_id"] == emergency and receipt["proof"] is not None

    page.get_by_role("link", name="最早").click()
    pages = -(-total // 20)
    expect(page.locator("#trail-total")).to_contain_text(f"第 {pages} 页，共 {pages} 页")
    oldest = page.locator("ol.trail li")
    expect(oldest).to_have_count(total - (pages - 1) * 20)
    assert emergency not in page.content()

    # Filtered to emergencies only, the break-glass is the one entry.
    page.goto("/me/access?access=emergency")
    expect(page.locator("ol.trail li")).to_have_count(1)
    expect(page.locator("#trail-total")).to_contain_text("共 1 次访问")

    page.get_by_role("link", name="证明详情").first.click()
    expect(page.get_by_text("已与签名日志核对无误")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text('"event_id"')  # words, not a raw JSON page
    screenshot(page, "zh-receipt")


def test_a_consent_is_granted_shown_in_force_and_withdrawn_after_confirming(page: Page, loaded,  # type: ignore[no-untyped-def]
                                                                            settings, token) -> None:
    p = _patient(settings, token)
    _sign_in(page, p["username"])
    form = page.locator("form[action='/me/consents']")
    form.get_by_label("机构").select_option("gz-insurer-1")
    form.get_by_label("用途").select_option("HPAYMT")
    form.get_by_label("允许").check()
    form.get_by_label("诊断和健康问题").check()
    form.get_by_role("button", name="保存我的选择").click()
    expect(page.get_by_role("status")).to_contain_text("您的选择已保存")
    row = page.locator("tr.consent").first
    expect(row).to_contain_text("贵州互助健康保险")
    expect(row).to_contain_text("生效中")
    screenshot(page, "zh-consents")
    row.get_by_label("撤回对贵州互助健康保险的同意").click()  # a withdrawal is asked about first
    expect(row.get_by_role("button", name="是的，撤回")).to_be_visible()
    row.get_by_role("button", name="是的，撤回").click()
    expect(page.get_by_role("status")).to_contain_text("许可已撤回")
    expect(page.locator("tr.consent").first).to_contain_text("已撤回")


def test_a_refusal_outweighs_a_permission_in_words(page: Page, loaded, settings, token) -> None:  # type: ignore[no-untyped-def]
    p = _patient(settings, token)
    _sign_in(page, p["username"])
    for decision in ("permit", "deny"):
        form = page.locator("form[action='/me/consents']")
        form.get_by_label("机构").select_option("gz-insurer-1")
        form.get_by_label("用途").select_option("HPAYMT")
        form.locator(f"input[name=decision][value={decision}]").check()
        form.get_by_label("诊断和健康问题").check()
        form.get_by_role("button", name="保存我的选择").click()
        expect(page.get_by_role("status")).to_be_visible()
    allowed = page.locator("tr.consent", has_text="已允许")
    expect(allowed).to_contain_text("未生效：以您的拒绝为准")
    expect(page.locator("tr.consent", has_text="已拒绝")).to_contain_text("生效中")


PHONE_PAGES = ["/", "/me", "/me/access", "/no/such/page"]


@pytest.mark.parametrize("path", PHONE_PAGES)
def test_pages_fit_a_390px_phone_and_axe_finds_nothing_serious(chromium: Browser, loaded, settings, token,  # type: ignore[no-untyped-def]
                                                               path: str) -> None:
    p = _patient(settings, token)
    _break_glass(settings, token, p["id"])  # an entry that stands out, on the trail pages
    ctx = chromium.new_context(base_url=settings.portal_url, locale="zh-CN", timezone_id="Asia/Shanghai",
                               viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    ctx.set_default_timeout(30_000)
    try:
        page = ctx.new_page()
        if path != "/":
            _sign_in(page, p["username"])
        page.goto(path)
        if path == "/no/such/page":
            expect(page.get_by_role("heading", name="抱歉")).to_be_visible()
            expect(page.locator("body")).not_to_contain_text("Not Found")
        widths = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        name = "phone" + (path.replace("/", "-").rstrip("-") or "-sign-in")
        screenshot(page, f"zh-{name}")
        assert widths[0] <= widths[1], f"{path} scrolls sideways at 390 px: {widths}"
        results = Axe().run(page)
        serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                   for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == [], serious
    finally:
        ctx.close()

"""In Chinese, in Chromium: a patient reports an emergency access from the trail and follows the report.

The regulator's side (queue, answer, audit log) is tests/e2e/test_complaints.py; attacks are
tests/security/test_complaint_attacks.py.
"""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_patient_portal import _break_glass, _patient, _sign_in
from tests.conftest import wait_for

REASON = "那天我不在急诊室，请核查。"


def _serious(page: Page) -> list[str]:
    results: Any = Axe().run(page)
    return [v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def test_a_patient_reports_a_break_glass_access_and_sees_it_waiting(page: Page, loaded, settings,  # type: ignore[no-untyped-def]
                                                                   token) -> None:
    p = _patient(settings, token)
    event_id = _break_glass(settings, token, p["id"])
    _sign_in(page, p["username"])

    def on_top() -> bool:
        page.goto("/me/access")
        return page.locator("ol.trail li").first.locator(f"a[href='/me/complaints/new?event={event_id}']").count() == 1

    wait_for(on_top, 60, "the emergency access at the top of the trail")
    report = page.locator("ol.trail li").first.locator(f"a[href='/me/complaints/new?event={event_id}']")
    expect(report).to_have_text("报告此次访问")
    expect(report).to_have_attribute("aria-label", "向监管机构报告 贵州省人民医院 的这次访问")
    report.click()
    expect(page.get_by_role("heading", name="报告此次访问")).to_be_visible()
    expect(page.locator("ol.trail")).to_contain_text("紧急访问")
    assert _serious(page) == []
    screenshot(page, "zh-report-access")
    page.locator("form[action='/me/complaints'] button").click()  # empty: the browser asks for the reason
    expect(page.get_by_role("heading", name="报告此次访问")).to_be_visible()
    page.get_by_label("您为什么要报告此次访问？").fill(REASON)

    def sent() -> bool:  # oversight reads the access from the audit topic within a second or two
        page.locator("form[action='/me/complaints'] button").click()
        page.wait_for_load_state()
        if "/me/complaints?done=filed" in page.url:
            return True
        page.go_back()
        page.get_by_label("您为什么要报告此次访问？").fill(REASON)
        return False

    wait_for(sent, 60, "the report to be accepted")
    expect(page.get_by_role("status")).to_contain_text("监管机构")
    row = page.locator("tr.complaint").first
    expect(row).to_have_attribute("data-state", "open")
    expect(row).to_contain_text(REASON)
    expect(row.locator("td.state")).to_have_text("等待监管机构处理")
    assert _serious(page) == []
    screenshot(page, "zh-my-reports")

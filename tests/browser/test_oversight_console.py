"""The regulator's oversight console in Chromium: hospitals, a hospital's charts, a review, an anomaly."""

from __future__ import annotations

import uuid

import httpx
from playwright.sync_api import Page, expect

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from tests.browser.conftest import screenshot
from tests.conftest import auth, wait_for

PASSWORD = "correct horse battery staple"


def sign_in_as_regulator(page: Page) -> None:
    ps = PortalSettings()
    user = f"inspector-{uuid.uuid4().hex[:6]}"
    Accounts(ps.store_url, PlatformKeys(ps.state_dir).portal_key()).create(user, PASSWORD, "regulator", user)
    page.goto("/")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form[action='/login'] button, form[action='/login'] input[type=submit]").first.click()
    page.wait_for_url("**/regulator")


def test_the_regulator_oversees_hospitals_reviews_break_glass_and_sees_a_burst(  # type: ignore[no-untyped-def]
        page: Page, loaded, token, settings) -> None:
    pid = loaded["patient_ids"][3]
    # a break-glass access to review, and a burst of reads of one record to be flagged
    r = httpx.get(f"{settings.records_url}/fhir/Patient/{pid}", timeout=30,
                  headers=auth(token("gy-hosp-002", sub="dr-browser-bg", purpose="ETREAT"),
                               **{"X-Break-Glass-Reason": "unconscious on arrival"}))
    assert r.status_code == 200, r.text
    broken = r.headers["X-Healthgov-Event-Id"]
    who = f"dr-burst-{uuid.uuid4().hex[:6]}"
    for _ in range(6):
        assert httpx.get(f"{settings.records_url}/fhir/Patient/{pid}", timeout=30,
                         headers=auth(token("gy-hosp-001", sub=who, purpose="TREAT"))).status_code == 200
    sign_in_as_regulator(page)

    page.goto("/oversight")
    table = page.locator("table#hospitals")
    expect(table).to_contain_text("gy-hosp-001")
    expect(table).to_contain_text("gy-hosp-005")
    page.locator("table#hospitals th a[href*='sort=volume']").click()
    page.wait_for_url("**sort=volume**")
    first = page.locator("table#hospitals tbody tr").first
    expect(first).to_contain_text("gy-hosp-001")  # the Synthea history is the largest volume
    with page.expect_download() as download:
        page.locator("a[href^='/oversight/hospitals.csv']").click()
    assert download.value.suggested_filename == "hospitals.csv"
    screenshot(page, "oversight-hospitals")

    page.locator("table#hospitals a[href='/oversight/hospitals/gy-hosp-001']").click()
    page.wait_for_url("**/oversight/hospitals/gy-hosp-001")
    expect(page.locator("table#metrics")).to_be_visible()
    # Synthea's codes leave some extensible bindings unmet: the rule is named among the top validity warnings
    expect(page.locator("table#warnings")).to_contain_text("binding-extensible")
    expect(page.locator("body")).to_have_attribute("data-charts", "5")  # Chart.js served here drew all five
    assert page.evaluate("document.getElementById('chart-volume').chart.data.datasets[0].data.length") >= 1
    screenshot(page, "oversight-hospital")

    def queued() -> bool:
        page.goto("/oversight/reviews")
        return page.locator(f"#review-{broken}").count() == 1

    wait_for(queued, 60, "the break-glass access in the review queue")
    row = page.locator(f"#review-{broken}")
    row.locator("input[value=not_justified]").check()
    row.locator("input[name=note]").fill("no emergency recorded for this visit")
    row.locator("button[type=submit]").click()
    page.wait_for_url("**/oversight/reviews?done=1")
    expect(page.locator("[role=status]")).to_be_visible()
    page.goto("/oversight/reviews?state=not_justified")
    expect(page.locator(f"#review-{broken}")).to_contain_text("no emergency recorded")
    screenshot(page, "oversight-reviews")

    def flagged() -> bool:
        page.goto("/oversight/anomalies?rule=repeated_record")
        return page.locator("table#anomalies tr", has_text=who).count() == 1

    wait_for(flagged, 60, "the burst of reads among the anomalies")
    expect(page.locator("table#anomalies tr", has_text=who)).to_contain_text("repeated_record")
    screenshot(page, "oversight-anomalies")

    page.goto(f"/oversight/audit?accessor={who}")
    expect(page.locator("table#events tr")).to_have_count(7)  # header and six reads, newest first
    expect(page.locator("main")).to_contain_text("6")
    page.goto("/oversight/audit?page=abc&since=%00")  # nonsense in the query is an answer, never a crash
    expect(page.locator("main")).to_be_visible()

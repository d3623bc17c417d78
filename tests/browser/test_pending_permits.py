"""Permits a hospital recorded on the patient's behalf wait, in Chinese, for the patient to confirm or reject.

A treating hospital records two permits (an insurer, a company); neither is in force. In Chromium the patient
confirms one (then it is in force) and rejects the other (asked first; then it is withdrawn), and records
agrees with the page.
"""

from __future__ import annotations

from typing import Any

import httpx
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_patient_portal import _patient, _sign_in
from tests.conftest import auth, wait_for
from tests.integration.records.support import permit


def _recorded_by_hospital(settings: Any, token: Any, pid: str, grantee: str, purpose: str) -> str:
    r = httpx.post(f"{settings.records_url}/fhir/Consent", json=permit(pid, grantee, purpose), timeout=30,
                   headers=auth(token("gy-hosp-001", purpose="TREAT")))
    assert r.status_code in (201, 202) and r.json()["status"] == "proposed", r.text
    return str(r.json()["id"])


def _status(settings: Any, token: Any, pid: str, cid: str) -> str:
    got = httpx.get(f"{settings.records_url}/fhir/Consent/{cid}", timeout=30,
                    headers=auth(token("healthgov-portal", role="patient", patient=pid, purpose="PATRQT")))
    return str(got.json()["status"])


def test_the_patient_confirms_one_hospital_recorded_permit_and_rejects_another(  # type: ignore[no-untyped-def]
        page: Page, loaded, settings, token) -> None:
    p = _patient(settings, token)
    insurer = _recorded_by_hospital(settings, token, p["id"], "gz-insurer-1", "HPAYMT")
    company = _recorded_by_hospital(settings, token, p["id"], "gy-datamart", "HMARKT")
    _sign_in(page, p["username"])
    waiting = page.locator("tr.consent[data-state='proposed']")
    expect(waiting).to_have_count(2)
    expect(waiting.first).to_contain_text("在您确认之前不生效")
    violations: Any = Axe().run(page)
    assert [v["id"] for v in violations.response["violations"] if v["impact"] in ("serious", "critical")] == []
    screenshot(page, "zh-pending-permits")

    page.get_by_role("button", name="确认给予贵州互助健康保险的许可").click()
    expect(page.get_by_role("status")).to_contain_text("您已确认该许可，现已生效")
    wait_for(lambda: _status(settings, token, p["id"], insurer) == "active", 30, "the permit in force")

    row = page.locator("tr.consent[data-state='proposed']")
    expect(row).to_have_count(1)
    row.get_by_label("拒绝为贵阳健康数据集市有限公司记录的许可").click()  # asked about first
    row.get_by_role("button", name="是的，拒绝").click()
    expect(page.get_by_role("status")).to_contain_text("许可已撤回")
    expect(page.locator("tr.consent[data-state='proposed']")).to_have_count(0)
    wait_for(lambda: _status(settings, token, p["id"], company) == "inactive", 30, "the permit withdrawn")

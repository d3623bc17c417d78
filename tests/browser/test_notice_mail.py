"""A patient asks for e-mail in the Chinese portal; an emergency access made in the test reaches their inbox.

The e-mail really travels: the portal's delivery worker reads the patient's notices from records, sends
through SMTP to the stack's aiosmtpd sink, which files it in a Maildir read here. The e-mail is in Chinese,
links to the portal and names neither the hospital, nor the reason, nor the patient.
"""

from __future__ import annotations

import mailbox
import time
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from services.cli.stack import Stack
from services.portal.config import PortalSettings
from tests.browser.conftest import screenshot
from tests.browser.test_patient_portal import EMERGENCY_REASON, _break_glass, _patient, _sign_in
from tests.conftest import wait_for


def _mail_to(address: str) -> list[EmailMessage]:
    """Every e-mail the stack's SMTP sink holds for ``address``."""
    box = mailbox.Maildir(Stack().maildir, factory=None, create=False)
    out = []
    for key in box.iterkeys():
        with box.get_file(key) as fh:
            msg = BytesParser(policy=policy.default).parse(fh)
        if str(msg["To"]) == address:
            out.append(msg)  # type: ignore[arg-type]
    return out


def _serious(results: Any) -> list[str]:
    return [v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")]


def test_a_break_glass_access_is_emailed_in_chinese_without_naming_anyone(page: Page, loaded, settings,  # type: ignore[no-untyped-def]
                                                                         token) -> None:
    p = _patient(settings, token)
    address = f"patient-{uuid.uuid4().hex[:8]}@example.com"
    _sign_in(page, p["username"])
    page.get_by_role("link", name="通过电子邮件接收这些消息").click()
    expect(page.get_by_role("heading", name="通过电子邮件接收消息")).to_be_visible()
    page.get_by_label("电子邮件地址").fill("li@example")  # the browser lets it through; the portal does not
    page.locator("form[action='/me/notify'] button").click()
    expect(page.get_by_role("alert")).to_contain_text("不是有效的电子邮件地址")
    page.get_by_label("电子邮件地址").fill(address)
    page.locator("form[action='/me/notify'] button").click()
    expect(page.get_by_role("status")).to_contain_text("地址已保存")
    expect(page.locator("main")).to_contain_text("p***@example.com")
    assert _serious(Axe().run(page)) == []
    screenshot(page, "zh-notify-settings")

    _break_glass(settings, token, p["id"])
    wait_for(lambda: bool(_mail_to(address)), timeout_s=90, what="the notice e-mail in the SMTP sink")
    time.sleep(2 * PortalSettings().notify_interval_s)  # further rounds of the worker send nothing more
    mails = _mail_to(address)
    assert len(mails) == 1, [m["Subject"] for m in mails]
    mail = mails[0]
    body = mail.get_content()
    assert "健康记录" in str(mail["Subject"]) and "登录" in body
    assert f"{settings.portal_url}/me#notices" in body
    for secret in (EMERGENCY_REASON, "gy-hosp-002", "贵阳", p["id"], p["username"]):
        assert secret not in body and secret not in str(mail["Subject"])

    page.reload()
    expect(page.locator("td.delivery").first).to_have_attribute("data-state", "sent")
    expect(page.locator("td.delivery").first).to_have_text("已发送")
    screenshot(page, "zh-notify-sent")


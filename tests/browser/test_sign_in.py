"""A patient signs in through the real login form in Chromium and reaches their own page.

The first of these tests found that no browser could sign in at all: the platform-wide ``Referrer-Policy:
no-referrer`` makes Chromium send ``Origin: null`` with form posts, which the portal's same-origin check refuses.
HTTP-client tests never saw it, as they send no Origin header.
"""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, expect

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Accounts
from services.portal.config import PortalSettings
from tests.browser.conftest import screenshot

PASSWORD = "correct horse battery staple"


def test_patient_signs_in_and_sees_own_page(page: Page, loaded) -> None:  # type: ignore[no-untyped-def]
    ps = PortalSettings()
    user = f"carol-{uuid.uuid4().hex[:6]}"
    Accounts(ps.store_url, PlatformKeys(ps.state_dir).portal_key()).create(
        user, PASSWORD, "patient", loaded["patient_ids"][5])
    page.goto("/")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("form[action='/login'] button, form[action='/login'] input[type=submit]").first.click()
    page.wait_for_url("**/me")
    expect(page.locator("#notices")).to_be_visible()
    expect(page.locator("form[action='/logout']")).to_be_visible()
    screenshot(page, "patient-home")


def test_wrong_password_stays_on_login(page: Page, loaded) -> None:  # type: ignore[no-untyped-def]
    page.goto("/")
    page.locator("input[name=username]").fill("nobody-" + uuid.uuid4().hex[:6])
    page.locator("input[name=password]").fill("wrong")
    page.locator("form[action='/login'] button, form[action='/login'] input[type=submit]").first.click()
    expect(page.locator("input[name=password]")).to_be_visible()
    assert "/me" not in page.url

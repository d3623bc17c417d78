"""Sign-in lockout and re-authentication as a person meets them in Chromium, in Chinese.

Five wrong passwords lock the account: the sixth attempt, with the right password, is refused in words with
the wait; erasure asks for the password again and deletes nothing with a wrong one. Each test has a client
address of its own (the portal trusts X-Forwarded-For from its local proxy), so the per-address count of one
test does not lock the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from services.portal.config import PortalSettings
from tests.browser.conftest import screenshot
from tests.browser.test_patient_portal import PASSWORD, _accounts, _sign_in


@pytest.fixture()
def own_page(chromium: Browser, settings) -> Iterator[Page]:  # type: ignore[no-untyped-def]
    host = uuid.uuid4().hex
    ctx = chromium.new_context(base_url=settings.portal_url, locale="zh-CN", timezone_id="Asia/Shanghai",
                               extra_http_headers={"X-Forwarded-For": f"2001:db8::{host[:4]}:{host[4:8]}"})
    ctx.set_default_timeout(30_000)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


def _try(page: Page, username: str, password: str) -> int:
    page.goto("/")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(password)
    with page.expect_response(lambda r: r.url.endswith("/login")) as answer:
        page.locator("form[action='/login'] button").click()
    return answer.value.status


def test_five_wrong_passwords_lock_the_account_even_against_the_right_one(own_page: Page, loaded) -> None:  # type: ignore[no-untyped-def]
    limit = PortalSettings().signin_account_failures
    username = "lock-" + uuid.uuid4().hex[:8]
    _accounts().create(username, PASSWORD, "patient", loaded["patient_ids"][4])
    assert [_try(own_page, username, f"wrong guess {i}") for i in range(limit)] == [401] * limit
    expect(own_page.get_by_role("alert")).to_contain_text("用户名或密码错误")
    assert _try(own_page, username, PASSWORD) == 429
    expect(own_page.locator("main")).to_contain_text("登录失败次数过多")
    assert "/me" not in own_page.url
    screenshot(own_page, "zh-sign-in-locked")


def test_erasure_asks_for_the_password_again(own_page: Page, loaded) -> None:  # type: ignore[no-untyped-def]
    username = "reauth-" + uuid.uuid4().hex[:8]
    _accounts().create(username, PASSWORD, "patient", loaded["patient_ids"][3])
    _sign_in(own_page, username)
    own_page.goto("/me/erase")
    own_page.get_by_label("您的密码").fill("not my password")
    own_page.locator("input[name=confirm]").fill("delete my records")
    own_page.locator("form[action='/me/erase'] button").click()
    expect(own_page.get_by_role("alert")).to_contain_text("没有删除任何内容")
    expect(own_page.get_by_label("您的密码")).to_be_visible()  # still asked: nothing was proven
    screenshot(own_page, "zh-erase-reauth")
    own_page.goto("/me")
    expect(own_page.locator("main")).not_to_contain_text("您的记录已删除")

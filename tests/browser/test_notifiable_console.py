"""The regulator's notifiable-disease charts in Chromium, in Chinese: a chart per disease, gaps and their legend."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.browser.test_oversight_console import sign_in_as_regulator
from tests.e2e.analytics_support import cases, district
from tests.integration.records.support import SNOMED

MEASLES = "14189004"


def test_the_regulator_reads_notifiable_disease_charts_in_chinese(  # type: ignore[no-untyped-def]
        page: Page, stack, token, settings) -> None:
    hidden, few, shown = district(), district(), district()
    cases(settings, token,
          (hidden, 15, SNOMED, MEASLES, "2024-03-12T09:00:00+08:00"),  # 2024-W11: withheld to protect `few`
          (few, 2, SNOMED, MEASLES, "2024-03-13T09:00:00+08:00"),  # 2024-W11: too few
          (shown, 10, SNOMED, MEASLES, "2024-03-19T09:00:00+08:00"))  # 2024-W12: released, 10
    sign_in_as_regulator(page)
    page.goto(f"/oversight/notifiable?since=2024-03-11&until=2024-03-24&district={hidden},{few},{shown}")

    expect(page.locator("h1")).to_have_text("法定传染病")
    expect(page.locator("body")).to_have_attribute("data-notifiable-charts", "5")  # one chart per disease
    canvas = page.locator("canvas#chart-measles")
    expect(canvas).to_be_visible()
    lines = page.evaluate("Object.fromEntries(document.getElementById('chart-measles').chart.data.datasets"
                          ".map(d => [d.withheld ? 'withheld' : d.label, d.data]))")
    # gaps where withheld, 0 without a case, and a mark at the foot of the week with withheld cells
    assert lines == {hidden: [None, 0], few: [None, 0], shown: [0, 10], "withheld": [0, None]}
    assert page.evaluate("document.getElementById('chart-measles').chart.data.labels") == ["2024-W11", "2024-W12"]
    legend = page.locator("#notifiable-legend")
    expect(legend).to_contain_text("折线中的空缺是被隐去的单元格")
    assert page.evaluate("document.getElementById('chart-measles').chart.data.datasets.at(-1).label") == \
        "已隐去（见“如何阅读图表”）"
    expect(legend).to_contain_text("small_count")
    expect(legend).to_contain_text("人数过少，不予显示")
    expect(page.locator("#disease-measles figcaption")).to_contain_text("麻疹")
    screenshot(page, "oversight-notifiable")

    href = page.locator("a#notifiable-json").get_attribute("href")
    assert href is not None and href.startswith("/oversight/notifiable.json?")
    answer = page.request.get(href)
    assert answer.status == 200 and answer.headers["content-type"].startswith("application/json")
    measles = next(d for d in answer.json()["diseases"] if d["id"] == "measles")
    assert {(r["district"], r["count"], r["suppressed"]) for r in measles["rows"]} == {
        (hidden, None, "protects_suppressed_cell"), (few, None, "small_count"), (shown, 10, None)}

    page.goto(f"/oversight/notifiable?since=2024-03-11&until=2024-03-24&district={shown}&measure=rate")
    expect(page.locator("body")).to_have_attribute("data-notifiable-charts", "5")
    rate = page.evaluate("document.getElementById('chart-measles').chart.data.datasets.map(d => d.data)")
    assert rate == [[0, None], [None, 0]]  # a test district has no population figure: no rate, a gap, a mark

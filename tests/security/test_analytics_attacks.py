"""Attacks on population analytics, end to end: differencing, injection, borrowed authority, oversized asks.

Each must fail on the running platform: the small group a subtraction would
reveal stays withheld, hostile query text is a 400 (never a 5xx, never SQL),
organisations with no analytic purpose are refused and audited.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.analytics_support import (
    COUGH,
    DIABETES,
    ask,
    cohort,
    district,
    populate,
    public_health,
    researcher,
)
from tests.integration.records.support import SNOMED, bearer, logged_event


def test_differencing_two_overlapping_queries_reveals_nothing(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    """"Everyone with diabetes in D" minus "... without a cough" would count the 2 who coughed."""
    place = district()
    populate(settings, token, place, 12)
    populate(settings, token, place, 2, codes=(DIABETES, COUGH))
    whole = ask(settings, public_health(token), {"cohort": cohort([place])})
    assert whole.status_code == 200 and whole.json()["total"]["count"] == 15  # 14 people
    without = {"cohort": {**cohort([place]), "exclude": [{"system": SNOMED, "codes": [COUGH]}]}}
    second = ask(settings, public_health(token), without)
    assert second.status_code == 200, second.text
    assert second.json()["total"] == {"count": None, "suppressed": "overlaps_released_answer"}
    # Nor through a grouping: the cough's 2 people are never a released cell or a difference of released cells.
    grouped = ask(settings, public_health(token), {"cohort": cohort([place], codes=(COUGH,)),
                                                   "measure": {"by": ["sex"]}})
    assert grouped.status_code == 200
    assert all(row["count"] is None for row in grouped.json()["rows"])
    assert grouped.json()["total"]["count"] is None


def test_differencing_across_a_records_restart_reveals_nothing(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    """A restarted records still knows what it released: the subtracting query stays withheld, the repeat the same."""
    place = district()
    populate(settings, token, place, 12)
    populate(settings, token, place, 2, codes=(DIABETES, COUGH))
    whole = ask(settings, public_health(token), {"cohort": cohort([place])})
    assert whole.status_code == 200 and whole.json()["total"]["count"] == 15  # 14 people
    stack.stop("records")
    stack.start("records")
    without = {"cohort": {**cohort([place]), "exclude": [{"system": SNOMED, "codes": [COUGH]}]}}
    second = ask(settings, public_health(token), without)
    assert second.status_code == 200, second.text
    assert second.json()["total"] == {"count": None, "suppressed": "overlaps_released_answer"}
    again = ask(settings, public_health(token), {"cohort": cohort([place])})
    assert again.content == whole.content and again.headers["X-Healthgov-Cached"] == "true"


def test_noise_cannot_be_averaged_away_and_a_spent_budget_refuses(stack, token, settings, documents) -> None:  # type: ignore[no-untyped-def]
    """Under a differentially private agreement: a repeat is the same draw; new questions spend until refused."""
    place = district()
    populate(settings, token, place, 9)
    body = {"title": "Diabetes feasibility", "purpose": "Counting diabetes privately", "types": ["Condition"],
            "deidentify": "safe_harbor", "expires": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            "privacy": {"epsilon": 0.2, "epsilon_per_query": 0.1}}
    applied = httpx.post(f"{settings.records_url}/projects", json=body, timeout=30,
                         headers=researcher(token, **{"X-Ethics-Approval": documents.ethics_approval(project="dp")}))
    assert applied.status_code == 201, applied.text
    project = applied.json()["id"]
    assert applied.json()["privacy"] == {"epsilon": 0.2, "epsilon_per_query": 0.1}
    regulator = bearer(token("gz-nhc", role="inspector", purpose="HCOMPL"))
    assert httpx.post(f"{settings.records_url}/projects/{project}/$approve", headers=regulator,
                      timeout=30).status_code == 200
    first = ask(settings, researcher(token), {"cohort": cohort([place]), "project": project})
    assert first.status_code == 200, first.text
    assert first.json()["differential_privacy"]["spent"] == 0.1
    repeats = {ask(settings, researcher(token), {"cohort": cohort([place]), "project": project}).content
               for _ in range(3)}
    assert repeats == {first.content}  # one draw of noise, however often asked: nothing to average
    grouped = ask(settings, researcher(token), {"cohort": cohort([place]), "project": project,
                                                "measure": {"by": ["sex"]}})
    assert grouped.status_code == 400 and grouped.json()["resourceType"] == "OperationOutcome"
    second = ask(settings, researcher(token), {"cohort": cohort([place], sex=["female"]), "project": project})
    assert second.status_code == 200 and second.json()["differential_privacy"]["remaining"] == 0
    third = ask(settings, researcher(token), {"cohort": cohort([place], sex=["male"]), "project": project})
    assert third.status_code == 403, third.text
    assert third.json()["resourceType"] == "OperationOutcome" and "privacy_budget_spent" in third.text
    event = logged_event(settings, token, third.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "denial" and event["decision"]["reasons"] == ["privacy_budget_spent"]
    assert ask(settings, researcher(token), {"cohort": cohort([place]), "project": project}).content == first.content


def test_repeating_a_question_gets_the_same_answer_not_a_new_sample(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    place = district()
    populate(settings, token, place, 9)
    answers = {ask(settings, public_health(token), {"cohort": cohort([place])}).content for _ in range(3)}
    assert len(answers) == 1


@pytest.mark.parametrize("query", [
    {"cohort": {"types": ["Condition"], "districts": ["x') OR 1=1 --"]}},
    {"cohort": {"types": ["Condition"], "include": [{"system": "http://snomed.info/sct'--", "codes": ["1"]}]}},
    {"cohort": {"types": ["Condition"], "include": [{"system": SNOMED, "codes": ["1' UNION SELECT person"]}]}},
    {"cohort": {"types": ["Condition; DROP TABLE facts"]}},
    {"cohort": {"types": ["Condition"]}, "measure": {"by": ["person"]}},
    {"cohort": {"types": ["Condition"]}, "measure": {"count": "rows"}},
    {"cohort": {"types": ["Condition"], "include": [{"system": SNOMED, "codes": ["1"] * 600}]}},
    {"cohort": {"types": ["Condition"], "age": {"min": -1}}},
    {"cohort": {"types": ["Condition"], "period": {"start": "yesterday"}}},
    {"cohort": "everyone"},
    [],
])
def test_hostile_queries_are_refused_with_400(stack, token, settings, query) -> None:  # type: ignore[no-untyped-def]
    r = ask(settings, public_health(token), query)
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "Traceback" not in r.text and "duckdb" not in r.text.lower()


def test_not_json_is_a_400(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{settings.records_url}/analytics/query", content=b"{not json", timeout=30,
                   headers={**public_health(token), "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("org", "purpose", "reason"), [
    ("gz-insurer-1", "HPAYMT", "analytics_not_permitted_for_org_type"),
    ("gy-hosp-001", "TREAT", "analytics_not_permitted_for_org_type"),
    ("gy-datamart", "HMARKT", "analytics_not_permitted_for_org_type"),
    ("gz-nhc", "HCOMPL", "analytics_not_permitted_for_org_type"),
])
def test_organisations_without_an_analytic_purpose_are_refused_and_audited(stack, token, settings, org, purpose,  # type: ignore[no-untyped-def]
                                                                         reason) -> None:
    r = ask(settings, bearer(token(org, role="analyst", purpose=purpose)), {"cohort": cohort([district()])})
    assert r.status_code == 403, r.text
    assert reason in r.text
    event = logged_event(settings, token, r.headers["X-Healthgov-Event-Id"])
    assert event["kind"] == "denial" and reason in event["decision"]["reasons"]


def test_public_health_cannot_borrow_the_research_purpose(stack, token, settings) -> None:  # type: ignore[no-untyped-def]
    borrowed = bearer(token("gy-cdc", role="epidemiologist", purpose="HRESCH"))
    r = ask(settings, borrowed, {"cohort": cohort([district()])})
    assert r.status_code == 403


def test_without_a_token_nothing_is_answered(stack, settings) -> None:  # type: ignore[no-untyped-def]
    r = httpx.post(f"{settings.records_url}/analytics/query", json={"cohort": cohort([district()])}, timeout=30)
    assert r.status_code == 401

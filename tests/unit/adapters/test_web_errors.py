"""The one error handler: what callers see for the error family, the framework's errors and bugs."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI, Path
from fastapi.testclient import TestClient

from services.adapters.web import MAX_INT64, install_error_handlers
from services.contracts import errors


def app(fhir: bool) -> FastAPI:
    api = FastAPI()
    install_error_handlers(api, fhir=fhir)

    @api.get("/throttled")
    def throttled() -> None:
        raise errors.Throttled("slow down", retry_after=7)

    @api.get("/denied")
    def denied() -> None:
        raise errors.Forbidden("access denied: no_consent", reasons=["no_consent"],
                               headers={errors.EVENT_HEADER: "ev-1"})

    @api.get("/bug")
    def bug() -> None:
        raise ValueError("SELECT secret FROM patients WHERE name = 'Alice'")

    @api.get("/items/{n}")
    def item(n: Annotated[int, Path(ge=0, le=MAX_INT64)]) -> dict[str, int]:
        return {"n": n}

    return api


@pytest.fixture
def fhir() -> TestClient:
    return TestClient(app(fhir=True), raise_server_exceptions=False)


def test_a_family_member_becomes_an_operation_outcome_with_its_headers(fhir: TestClient) -> None:
    r = fhir.get("/throttled")
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.json() == {"resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "throttled", "diagnostics": "slow down"}]}
    denied = fhir.get("/denied")
    assert denied.status_code == 403 and denied.headers[errors.EVENT_HEADER] == "ev-1"


def test_a_bug_is_a_generic_500_that_quotes_nothing(fhir: TestClient) -> None:
    r = fhir.get("/bug")
    assert r.status_code == 500 and "Alice" not in r.text and "SELECT" not in r.text
    assert r.json()["issue"][0]["code"] == "exception"
    assert r.headers["x-content-type-options"] == "nosniff"


def test_framework_errors_are_operation_outcomes_without_the_value_sent(fhir: TestClient) -> None:
    assert fhir.get("/nowhere").json()["issue"][0]["code"] == "not-found"
    wrong = fhir.post("/throttled")
    assert wrong.status_code == 405 and wrong.json()["resourceType"] == "OperationOutcome"
    for bad in ("abc-secret", str(2**64), "-1"):
        r = fhir.get(f"/items/{bad}")
        assert r.status_code == 400 and bad not in r.text, r.text
        assert r.json()["issue"][0]["expression"] == ["path.n"]


def test_services_that_are_not_fhir_answer_small_json_with_the_reasons() -> None:
    client = TestClient(app(fhir=False), raise_server_exceptions=False)
    r = client.get("/denied")
    assert r.json() == {"error": "forbidden", "detail": "access denied: no_consent", "reasons": ["no_consent"]}
    assert r.headers["x-frame-options"] == "DENY"

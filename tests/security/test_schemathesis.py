"""Property-based calls from each service's own OpenAPI: no input may cause a server error.

schemathesis reads ingest's, records' and audit's OpenAPI documents from the
running platform and sends, per operation, a bounded number of generated
requests (valid and deliberately invalid parameters and bodies), each with a
fresh, valid token of a caller who may use that service, so the requests get
past authentication into the code behind it. The only check is
``not_a_server_error``: a 4xx of any kind is a correct answer to nonsense, a
5xx never is. The portal is HTML forms and is attacked in
``test_portal_attacks.py``.

Examples are derived deterministically (``derandomize``), so ``make test``
answers the same way every run; set HEALTHGOV_FUZZ_EXAMPLES to explore more.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from tests.conftest import TokenFactory

EXAMPLES = int(os.environ.get("HEALTHGOV_FUZZ_EXAMPLES", "15"))
FUZZ = hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                           suppress_health_check=list(HealthCheck))


def _schema(url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{url}/openapi.json", wait_for_schema=30)


@pytest.fixture(scope="session")
def ingest_api(stack, settings) -> schemathesis.BaseSchema:  # type: ignore[no-untyped-def]
    return _schema(settings.ingest_url)


@pytest.fixture(scope="session")
def records_api(stack, settings) -> schemathesis.BaseSchema:  # type: ignore[no-untyped-def]
    return _schema(settings.records_url)


@pytest.fixture(scope="session")
def audit_api(stack, settings) -> schemathesis.BaseSchema:  # type: ignore[no-untyped-def]
    return _schema(settings.audit_url)


def _call(case: schemathesis.Case, bearer: Callable[[], str]) -> None:
    headers = {"Authorization": f"Bearer {bearer()}"}  # single-use tokens: a fresh one per request
    case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=60)


ingest = schemathesis.pytest.from_fixture("ingest_api")
records = schemathesis.pytest.from_fixture("records_api")
audit = schemathesis.pytest.from_fixture("audit_api")


@ingest.parametrize()
@FUZZ
def test_ingest_never_answers_a_server_error(case: schemathesis.Case, token: TokenFactory) -> None:
    _call(case, lambda: token("gy-hosp-002", "ingest", role="integration"))


@records.parametrize()
@FUZZ
def test_records_never_answers_a_server_error(case: schemathesis.Case, token: TokenFactory) -> None:
    _call(case, lambda: token("gy-hosp-002", "records", role="clinician", purpose="TREAT"))


@audit.parametrize()
@FUZZ
def test_audit_never_answers_a_server_error(case: schemathesis.Case, token: TokenFactory) -> None:
    _call(case, lambda: token("gz-nhc", "audit", role="regulator", purpose="HCOMPL"))

"""Property-based calls from each service's own OpenAPI: no input may cause a server error.

schemathesis reads ingest's, records', audit's and oversight's OpenAPI documents from the
running platform and sends, per operation, a bounded number of generated
requests, both valid ones and deliberately invalid ones (wrong types, values
out of range, unexpected parameters and bodies), each with a fresh, valid
token of a caller who may use that service, so the requests get past
authentication into the code behind it. The only check is schemathesis's
``not_a_server_error``: a 4xx of any kind is a correct answer to nonsense, a
5xx never is. Every operation runs even when an earlier one failed, and the
failure names each operation with a curl command that reproduces it. The
portal is HTML forms and is attacked in ``test_portal_attacks.py``.

Examples are derived deterministically (``derandomize``), so ``make test``
answers the same way every run; HEALTHGOV_FUZZ_EXAMPLES explores further.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.conftest import TokenFactory

EXAMPLES = int(os.environ.get("HEALTHGOV_FUZZ_EXAMPLES", "40"))
FUZZ = hypothesis_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                           suppress_health_check=list(HealthCheck), report_multiple_bugs=False)

# Who calls each service: an organisation that may use it, so requests reach the code behind the token check.
CALLERS: dict[str, Callable[[TokenFactory], str]] = {
    "ingest": lambda token: token("gy-hosp-002", "ingest", role="integration"),
    "records": lambda token: token("gy-hosp-002", "records", role="clinician", purpose="TREAT"),
    "audit": lambda token: token("gz-nhc", "audit", role="regulator", purpose="HCOMPL"),
    "oversight": lambda token: token("gz-nhc", "oversight", role="regulator", purpose="HCOMPL"),
}


def _fuzz(operation: schemathesis.APIOperation, mode: GenerationMode, bearer: Callable[[], str]) -> None:
    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        # Tokens are single-use (jti): a fresh one per request.
        case.call_and_validate(headers={"Authorization": f"Bearer {bearer()}"}, checks=[not_a_server_error],
                               timeout=60)

    run()


@pytest.mark.parametrize("service", sorted(CALLERS))
def test_no_generated_request_gets_a_server_error(stack, settings, token, service: str) -> None:  # type: ignore[no-untyped-def]
    url = getattr(settings, f"{service}_url")
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", wait_for_schema=30)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode, lambda: CALLERS[service](token))
            except Unsatisfiable:  # no invalid request can be made for it (e.g. no parameters at all)
                continue
            except Exception as exc:  # schemathesis's check failure, with the call that reproduces it
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert operations >= 3, f"{service} published only {operations} operations"
    assert not failures, "\n\n".join(failures)

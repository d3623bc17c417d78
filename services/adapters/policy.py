"""The OPA adapter: the one place Python asks for a policy decision.

Python never re-codes a rule; it asks OPA and acts on the answer. If OPA cannot
be reached, or answers with something that is not a decision, the answer is a
deny (fail closed).
"""

from __future__ import annotations

import logging
from urllib.parse import urlparse

from opa_client import OpaClient
from pydantic import ValidationError

from services.contracts.policy import DECISION_PATH, Decision, PolicyInput

log = logging.getLogger(__name__)


class PolicyClient:
    """Asks ``data.healthgov.access.decision`` over OPA's REST API."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        parsed = urlparse(url)
        self._client = OpaClient(host=parsed.hostname or "127.0.0.1", port=parsed.port or 8181,
                                 retries=0, timeout=timeout_s)
        # requests would re-read every proxy variable of the environment on each decision
        # (a measurable share of a read's CPU); OPA is a local sidecar, never behind a proxy.
        self._client._session.trust_env = False

    def decide(self, policy_input: PolicyInput) -> Decision:
        try:
            answer = self._client.query_rule(
                input_data=policy_input.model_dump(mode="json"),
                package_path=DECISION_PATH,
            )
        except Exception as exc:  # any transport or HTTP failure: deny
            log.warning("OPA unreachable: %r", exc)
            return Decision.fail_closed("policy_engine_unavailable")
        result = answer.get("result")
        if not isinstance(result, dict):
            return Decision.fail_closed("policy_undefined")
        try:
            return Decision.model_validate(result)
        except ValidationError:
            return Decision.fail_closed("policy_malformed_decision")

    def healthy(self) -> bool:
        return self._client.check_health()

"""The OPA adapter: the one place Python asks for a policy decision.

Python never re-codes a rule; it asks OPA and acts on the answer. If OPA cannot
be reached, or answers with something that is not a decision, the answer is a
deny (fail closed).

Decisions travel over one keep-alive ``http.client`` connection per thread.
Every read asks at least once, and through ``opa-python-client`` (requests
underneath) a decision cost 0.9 ms of the records service's CPU against
0.22 ms this way, measured on the same OPA; on a read whose whole budget is a
few milliseconds that difference is the largest single item. The client
library stays for what is not on the hot path (health).
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from urllib.parse import urlparse

import orjson
from opa_client import OpaClient
from pydantic import ValidationError

from services.adapters import telemetry
from services.contracts.policy import DECISION_PATH, DECISIONS_PATH, Decision, PolicyInput, PolicyResource

log = logging.getLogger(__name__)


_FAIL_CLOSED = frozenset({"policy_engine_unavailable", "policy_malformed_decision", "policy_undefined"})


def _count(path: str, decision: Decision) -> None:
    """Decisions by outcome: allow, deny, or fail_closed (OPA gave no usable answer, an operator's concern)."""
    if decision.allow:
        outcome = "allow"
    elif _FAIL_CLOSED.intersection(decision.reasons):
        outcome = "fail_closed"
    else:
        outcome = "deny"
    telemetry.POLICY_DECISIONS.labels(path, outcome).inc()


class PolicyClient:
    """Asks ``data.healthgov.access.decision`` over OPA's REST API."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        parsed = urlparse(url)
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 8181
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._client = OpaClient(host=self._host, port=self._port, retries=0, timeout=timeout_s)
        # requests would re-read every proxy variable of the environment on each call;
        # OPA is a local sidecar, never behind a proxy.
        self._client._session.trust_env = False

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """One POST; a keep-alive connection the server closed meanwhile is reopened once."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", f"/v1/data/{path}", body=body, headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop()
                if attempt == 2:
                    raise
            except Exception:
                self._drop()
                raise
        raise AssertionError("unreachable")

    def _ask(self, path: str, policy_input: dict[str, object]) -> object:
        """OPA's ``result`` for ``path``, or the reason to fail closed (a ``Decision``)."""
        start = time.perf_counter()
        try:
            with telemetry.span("opa decide", telemetry.SpanKind.CLIENT, **{"healthgov.policy.path": path}):
                status, raw = self._post(path, orjson.dumps({"input": policy_input}))
            telemetry.POLICY_LATENCY.labels(path).observe(time.perf_counter() - start)
        except Exception as exc:  # any transport failure: deny
            log.warning("OPA unreachable: %r", exc)
            return Decision.fail_closed("policy_engine_unavailable")
        if status != 200:
            log.warning("OPA answered HTTP %s", status)
            return Decision.fail_closed("policy_engine_unavailable")
        try:
            return orjson.loads(raw).get("result")
        except (orjson.JSONDecodeError, AttributeError):
            return Decision.fail_closed("policy_malformed_decision")

    @staticmethod
    def _decision(result: object) -> Decision:
        if isinstance(result, Decision):
            return result
        if not isinstance(result, dict):
            return Decision.fail_closed("policy_undefined")
        try:
            return Decision.model_validate(result)
        except ValidationError:
            return Decision.fail_closed("policy_malformed_decision")

    def decide(self, policy_input: PolicyInput) -> Decision:
        decision = self._decision(self._ask(DECISION_PATH, policy_input.model_dump(mode="json")))
        _count(DECISION_PATH, decision)
        return decision

    def decide_each(self, policy_input: PolicyInput, resources: list[PolicyResource]) -> list[Decision]:
        """The decision for ``policy_input`` with each of ``resources`` in turn, in one evaluation.

        Anything but one decision per resource fails every one of them closed.
        """
        doc = policy_input.model_dump(mode="json")
        doc["resources"] = [r.model_dump(mode="json") for r in resources]
        result = self._ask(DECISIONS_PATH, doc)
        if isinstance(result, Decision):
            decisions = [result] * len(resources)
        elif not isinstance(result, list) or len(result) != len(resources):
            decisions = [Decision.fail_closed("policy_malformed_decision")] * len(resources)
        else:
            decisions = [self._decision(r) for r in result]
        for d in decisions:
            _count(DECISIONS_PATH, d)
        return decisions

    def healthy(self) -> bool:
        return self._client.check_health()

"""The OPA adapter fails closed on every answer that is not a decision, and survives dropped keep-alives.

A tiny local HTTP server stands in for OPA's REST API so that each broken
answer can be produced on purpose; the real OPA is exercised by the
integration and end-to-end tests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import orjson
import pytest

from services.adapters.policy import PolicyClient
from services.contracts.policy import PolicyInput, PolicyResource, Relationship, Subject

ALLOW = {"result": {"allow": True, "reasons": ["clinician_care_relationship"], "policy_version": "t",
                    "obligations": {"deidentify": "none", "redact_labels": [], "notify_patient": False}}}


class FakeOpa(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OPA
    answers: ClassVar[list[tuple[int, bytes, bool]]] = []  # (status, body, close the connection after it)
    seen: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        FakeOpa.seen.append(orjson.loads(body))
        status, payload, close = FakeOpa.answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        if close:
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def opa() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpa)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    FakeOpa.answers, FakeOpa.seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def policy_input() -> PolicyInput:
    return PolicyInput(subject=Subject(id="u", org="gy-hosp-001", org_type="hospital", role="clinician"),
                       action="read", purpose="TREAT",
                       resource=PolicyResource(patient="p-1", type="Condition", labels=[], hospital="gy-hosp-001"),
                       relationship=Relationship(care=True), consents=[], now="2026-11-23T10:00:00Z")


def test_a_decision_is_read_and_the_input_is_sent_whole(opa: str) -> None:
    FakeOpa.answers = [(200, orjson.dumps(ALLOW), False)]
    decision = PolicyClient(opa).decide(policy_input())
    assert decision.allow and decision.reasons == ["clinician_care_relationship"]
    assert FakeOpa.seen[0]["input"]["resource"]["type"] == "Condition"
    assert FakeOpa.seen[0]["input"]["subject"]["org"] == "gy-hosp-001"


@pytest.mark.parametrize(("status", "body", "reason"), [
    (500, b'{"code": "internal_error"}', "policy_engine_unavailable"),
    (200, b"{}", "policy_undefined"),
    (200, b'{"result": true}', "policy_undefined"),
    (200, b"not json", "policy_malformed_decision"),
    (200, b'{"result": {"allow": "yes please"}}', "policy_malformed_decision"),
])
def test_anything_but_a_decision_is_a_deny(opa: str, status: int, body: bytes, reason: str) -> None:
    FakeOpa.answers = [(status, body, False)]
    decision = PolicyClient(opa).decide(policy_input())
    assert not decision.allow
    assert decision.reasons == [reason]


def test_a_closed_keep_alive_connection_is_reopened(opa: str) -> None:
    FakeOpa.answers = [(200, orjson.dumps(ALLOW), True), (200, orjson.dumps(ALLOW), False)]
    client = PolicyClient(opa)
    assert client.decide(policy_input()).allow
    assert client.decide(policy_input()).allow  # the server closed the first connection
    assert len(FakeOpa.seen) == 2


def test_no_server_is_a_deny() -> None:
    decision = PolicyClient("http://127.0.0.1:9", timeout_s=0.5).decide(policy_input())
    assert not decision.allow and decision.reasons == ["policy_engine_unavailable"]


def resources() -> list[PolicyResource]:
    return [PolicyResource(patient="p-1", type=t, labels=[], hospital="gy-hosp-001")
            for t in ("Condition", "Encounter")]


def test_several_resources_are_one_request_with_one_answer_each(opa: str) -> None:
    deny = {**ALLOW["result"], "allow": False, "reasons": ["no_care_relationship"]}
    FakeOpa.answers = [(200, orjson.dumps({"result": [ALLOW["result"], deny]}), False)]
    decisions = PolicyClient(opa).decide_each(policy_input(), resources())
    assert [d.allow for d in decisions] == [True, False]
    assert decisions[1].reasons == ["no_care_relationship"]
    (asked,) = FakeOpa.seen
    assert [r["type"] for r in asked["input"]["resources"]] == ["Condition", "Encounter"]


@pytest.mark.parametrize(("status", "body", "reason"), [
    (500, b"{}", "policy_engine_unavailable"),
    (200, b"{}", "policy_malformed_decision"),
    (200, orjson.dumps({"result": [ALLOW["result"]]}), "policy_malformed_decision"),  # one answer for two
])
def test_a_batch_that_is_not_one_decision_per_resource_denies_them_all(opa: str, status: int, body: bytes,
                                                                       reason: str) -> None:
    FakeOpa.answers = [(status, body, False)]
    decisions = PolicyClient(opa).decide_each(policy_input(), resources())
    assert len(decisions) == 2
    assert all(not d.allow and d.reasons == [reason] for d in decisions)


def test_a_malformed_answer_in_a_batch_denies_only_that_resource(opa: str) -> None:
    FakeOpa.answers = [(200, orjson.dumps({"result": [ALLOW["result"], {"allow": "perhaps"}]}), False)]
    decisions = PolicyClient(opa).decide_each(policy_input(), resources())
    assert decisions[0].allow
    assert not decisions[1].allow and decisions[1].reasons == ["policy_malformed_decision"]

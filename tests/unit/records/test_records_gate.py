"""The disclosure gate's decision logic, with fakes for the broker, the policy and the outbox.

The gate is what every records path goes through; these tests pin down what
it publishes and what it owes the patient without any server (the same paths
run against the real stack in tests/e2e and tests/security).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from services.adapters.audit_log import AuditLog
from services.adapters.auth import Caller
from services.adapters.kafka import BrokerUnavailable, Message
from services.contracts.policy import Decision, Obligations
from services.records import care
from services.records.access import Asker, Authority, Denied, Facts
from services.records.gate import Gate, audit_event
from services.records.store import Notice


class FakeBroker:
    def __init__(self, refuse: bool = False) -> None:
        self.sent: list[Message] = []
        self.round_trips = 0
        self.refuse = refuse

    def send(self, message: Message) -> None:
        self.send_all([message])

    def send_all(self, messages: list[Message]) -> None:
        self.round_trips += 1
        if self.refuse:
            raise BrokerUnavailable("down")
        self.sent.extend(messages)

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(m.value) for m in self.sent if m.topic == "audit.events.v1"]


class FakeOutbox:
    def __init__(self) -> None:
        self.notices: list[Notice] = []

    def add(self, notices: list[Notice], session: Any = None) -> None:
        self.notices.extend(notices)


class FakePolicy:
    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.asked = 0

    def decide(self, _input: Any) -> Decision:
        self.asked += 1
        return self.decision


class FakeVault:
    def pseudonym(self, value: str) -> str:
        return "p-" + value


CLINICIAN = Caller(id="dr", org="gy-hosp-001", org_type="hospital", role="clinician")
POLICE = Caller(id="officer", org="gy-police", org_type="law_enforcement", role="officer")


def gate() -> tuple[Gate, FakeBroker, FakeOutbox]:
    broker, outbox = FakeBroker(), FakeOutbox()
    return Gate(AuditLog(broker), outbox), broker, outbox


def asker(policy: FakePolicy, caller: Caller = CLINICIAN, purpose: str = "TREAT") -> Asker:
    return Asker(policy, FakeVault(), caller, "read", Authority(purpose=purpose), "p-1", Facts())  # type: ignore[arg-type]


def test_a_refusal_is_published_before_it_is_raised() -> None:
    g, broker, outbox = gate()
    policy = FakePolicy(Decision(allow=False, reasons=["no_care_relationship"]))
    with pytest.raises(Denied) as refused:
        g.check(asker(policy), "Condition", [], "gy-hosp-002", details={"action": "read"})
    [event] = broker.events()
    assert event["kind"] == "denial" and event["event_id"] == refused.value.event_id
    assert event["decision"]["reasons"] == ["no_care_relationship"] and event["patient"] == "p-1"
    assert outbox.notices == []  # nothing left: nothing to tell


def test_an_allowed_check_publishes_nothing_until_the_act_is_recorded() -> None:
    g, broker, _ = gate()
    decision = g.check(asker(FakePolicy(Decision(allow=True, reasons=["clinician_care_relationship"]))),
                       "Condition", [], None)
    assert decision.allow and broker.sent == []
    event = g.record(kind="disclosure", caller=CLINICIAN, authority=Authority(purpose="TREAT"), patient="p-1",
                     decision=decision, body=b"released bytes")
    [published] = broker.events()
    assert published["event_id"] == event.event_id and published["data_digest"] == event.data_digest


@pytest.mark.parametrize(("caller", "kind", "purpose", "obligations", "told"), [
    (CLINICIAN, "disclosure", "TREAT", Obligations(), None),
    (CLINICIAN, "break_glass", "ETREAT", Obligations(notify_patient=True), "break_glass"),
    (POLICE, "disclosure", "HLEGAL", Obligations(notify_patient=True), "state_access"),
    (CLINICIAN, "consent", "TREAT", Obligations(notify_patient=True), "on_behalf"),
])
def test_the_patient_is_told_what_the_policy_and_the_platform_owe_them(  # type: ignore[no-untyped-def]
        caller, kind, purpose, obligations, told) -> None:
    g, _, outbox = gate()
    decision = Decision(allow=True, reasons=["r"], obligations=obligations)
    event = g.record(kind=kind, caller=caller, authority=Authority(purpose=purpose), patient="p-1",
                     decision=decision)
    assert [(n.kind, n.event_id, n.org) for n in outbox.notices] == ([] if told is None else
                                                                     [(told, event.event_id, caller.org)])


def test_a_warrant_defers_the_notice_but_never_cancels_it() -> None:
    g, _, outbox = gate()
    later = datetime.now(UTC) + timedelta(days=90)
    decision = Decision(allow=True, reasons=["lawful_warrant"],
                        obligations=Obligations(notify_patient=True, notify_after=later.isoformat()))
    g.record(kind="disclosure", caller=POLICE, authority=Authority(purpose="HLEGAL"), patient="p-1",
             decision=decision)
    [notice] = outbox.notices
    assert notice.kind == "state_access" and abs((notice.visible_from - later).total_seconds()) < 1


RESEARCHER = Caller(id="prof", org="gz-uni-research", org_type="research", role="researcher", purpose="HRESCH")


def export_events(patients: list[str]) -> list[Any]:
    return [audit_event(kind="disclosure", caller=RESEARCHER, authority=Authority(purpose="HRESCH"), patient=p,
                        decision=None, details={"project": "prj-1", "export": "job-1"}) for p in patients]


def test_many_acts_are_published_in_one_round_trip_each_with_its_event_and_notice() -> None:
    g, broker, outbox = gate()
    patients = [f"p-{i}" for i in range(50)]
    events = g.record_all(export_events(patients), Decision(allow=True, reasons=["research_project_export"]))
    assert broker.round_trips == 1
    published = broker.events()
    assert [e["patient"] for e in published] == patients  # one event, one leaf, per patient
    assert len({e["event_id"] for e in published}) == len(patients)
    assert [(n.patient, n.kind, n.project, n.event_id) for n in outbox.notices] == [
        (e.patient, "research_use", "prj-1", e.event_id) for e in events]


def test_if_the_broker_refuses_a_batch_no_patient_is_told() -> None:
    broker, outbox = FakeBroker(refuse=True), FakeOutbox()
    with pytest.raises(BrokerUnavailable):
        Gate(AuditLog(broker), outbox).record_all(export_events(["p-1", "p-2"]), None)
    assert broker.sent == [] and outbox.notices == []


NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=30)


@pytest.mark.parametrize(("resource", "until"), [
    ({"resourceType": "Observation", "status": "final"}, None),
    ({"resourceType": "Encounter", "status": "in-progress", "period": {"start": "2026-12-05T08:00:00Z"}},
     NOW + WINDOW),
    ({"resourceType": "Encounter", "status": "finished", "period": {"end": "2026-12-01T08:00:00Z"}},
     datetime(2026, 12, 31, 8, 0, tzinfo=UTC)),
    ({"resourceType": "Encounter", "status": "finished", "period": {"end": "2026-10-01T08:00:00Z"}}, None),
    ({"resourceType": "Encounter", "status": "finished", "period": {"start": "2026-12-01T08:00:00Z"}}, None),
    ({"resourceType": "Encounter", "status": "cancelled", "period": {"start": "2026-12-05T08:00:00Z"}}, None),
    ({"resourceType": "Encounter", "status": "planned", "period": {"start": "2027-01-05T08:00:00Z"}}, None),
    ({"resourceType": "EpisodeOfCare", "status": "active", "period": {"start": "2026-01-01"}}, NOW + WINDOW),
])
def test_only_current_encounters_are_evidence_of_care(resource: dict[str, Any], until: datetime | None) -> None:
    assert care.evidence_until(resource, NOW, WINDOW) == until

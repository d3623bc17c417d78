"""Reads as the records service runs them (no transaction around them), on SQLite and PostgreSQL.

The single-resource read takes a shortcut (the row and its patient's state in
one query); these tests pin that it answers exactly what the general path
answers: the newest version, 404 for an unknown id, 410 after erasure, and
the decision's audit event before any data.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from sqlmodel import Session

from services.adapters.auth import Caller
from services.adapters.policy import PolicyClient
from services.records.access import Authority, Denied, NotFound
from services.records.service import Reader, ReadRequest
from services.records.store import CareLink, Record, read_engine
from services.records.vault import Shredded
from tests.integration.records.support import use_case

PID = "reads-patient"
CLINICIAN = Caller(id="dr", org="gy-hosp-001", org_type="hospital", role="clinician")
STRANGER = Caller(id="dr", org="gy-hosp-002", org_type="hospital", role="clinician")
TREAT = Authority(purpose="TREAT")


def store(engine, vault, version: int, text: str, *, rtype: str = "Condition", rid: str = "c1",  # type: ignore[no-untyped-def]
          hospital: str = "gy-hosp-001", labels: list[str] | None = None) -> None:
    patient = vault.pseudonym(PID)
    with Session(engine) as s:
        row = Record(patient=patient, rtype=rtype, rid_index=vault.rid_index(rtype, rid),
                     version=version, hospital=hospital, content_index=f"{rid}.v{version}", submission_id="s",
                     ciphertext=b"")
        vault.seal_row(vault.data_key(s, patient, create=True), row,
                       {"resourceType": rtype, "id": rid, "code": {"text": text},
                        "subject": {"reference": f"Patient/{PID}"}}, labels or [])
        s.add(row)
        if version == 1 and rid == "c1":
            s.add(CareLink(patient=patient, hospital="gy-hosp-001", expires_at=datetime.now(UTC) + timedelta(days=1)))
        s.commit()


class CountingPolicy(PolicyClient):
    """The real OPA client, counting how often it asks."""

    def __init__(self, url: str) -> None:
        super().__init__(url, timeout_s=2.0)
        self.single = 0
        self.batches = 0

    def decide(self, policy_input):  # type: ignore[no-untyped-def]
        self.single += 1
        return super().decide(policy_input)

    def decide_each(self, policy_input, resources):  # type: ignore[no-untyped-def]
        self.batches += 1
        return super().decide_each(policy_input, resources)


@pytest.fixture
def reader(engine, vault, settings) -> Reader:  # type: ignore[no-untyped-def]
    store(engine, vault, 1, "first")
    store(engine, vault, 2, "second")
    return use_case(Reader, read_engine(engine), vault, settings)


def test_a_single_read_returns_the_newest_version(reader: Reader) -> None:
    out = reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="c1", authority=TREAT))
    assert orjson.loads(out.body)["code"]["text"] == "second"
    assert out.event_id


def test_the_shortcut_and_the_search_agree(reader: Reader) -> None:
    single = orjson.loads(reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="c1", authority=TREAT)).body)
    found = orjson.loads(reader.read(CLINICIAN, ReadRequest(rtype="Condition", patient_id=PID,
                                                            authority=TREAT)).body)
    assert [e["resource"] for e in found["entry"]] == [single]


def test_an_older_version_is_still_readable_by_version(reader: Reader) -> None:
    doc = orjson.loads(reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="c1", version=1,
                                                          authority=TREAT)).body)
    assert doc["code"]["text"] == "first"


def test_an_unknown_id_is_not_found(reader: Reader) -> None:
    with pytest.raises(NotFound):
        reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="nope", authority=TREAT))


def test_the_care_relationship_comes_from_the_same_query(reader: Reader) -> None:
    with pytest.raises(Denied) as denied:
        reader.read(STRANGER, ReadRequest(rtype="Condition", rid="c1", authority=TREAT))
    assert denied.value.reasons == ["no_care_relationship"]


def test_after_erasure_a_single_read_is_gone(reader: Reader, engine, vault) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        vault.shred(s, vault.pseudonym(PID))
        s.commit()
    with pytest.raises(Shredded):
        reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="c1", authority=TREAT))


def test_a_whole_record_is_one_policy_evaluation_with_the_same_answers(engine, vault, settings) -> None:  # type: ignore[no-untyped-def]
    store(engine, vault, 1, "flu")
    store(engine, vault, 1, "visit", rtype="Encounter", rid="e1", hospital="gy-hosp-002")
    store(engine, vault, 1, "talk", rtype="Encounter", rid="e2", hospital="gy-hosp-002", labels=["PSY"])
    policy = CountingPolicy(settings.opa_url)
    reader = use_case(Reader, read_engine(engine), vault, settings)
    reader.policy = policy
    out = reader.read(CLINICIAN, ReadRequest(patient_id=PID, authority=TREAT))
    assert (policy.batches, policy.single) == (1, 0)  # three kinds of resource, one question
    released = sorted(e["resource"]["id"] for e in orjson.loads(out.body).get("entry", []))

    # The same read, one question per kind, must release exactly the same resources.
    one_by_one = use_case(Reader, read_engine(engine), vault, settings)
    found = one_by_one.locate(CLINICIAN, ReadRequest(patient_id=PID, authority=TREAT))
    expected = sorted(i.resource["id"] for i in found.items
                      if (d := found.asker.decide(i.rtype, i.labels, i.hospital)).allow
                      and not set(i.labels) & set(d.obligations.redact_labels))
    assert released == expected
    assert "c1" in released

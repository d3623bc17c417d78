"""Fail closed, lose nothing: the use cases against a dead broker or a dead policy engine.

The database is a fresh one (SQLite and PostgreSQL); OPA and Kafka are the
stack's real servers, or a port where nothing listens. Nothing here is
mocked: an unreachable component is really unreachable.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from services.adapters.auth import Caller
from services.adapters.kafka import BrokerUnavailable
from services.records.access import Authority, Denied
from services.records.erasure import Eraser
from services.records.registry import ConsentRegistry
from services.records.service import Reader, ReadRequest
from services.records.store import CareLink, ConsentRow, PatientKey, Record
from tests.integration.records.support import permit, use_case

DEAD = "127.0.0.1:9"  # discard port: nothing listens
PID = "fail-closed-patient"
PATIENT = Caller(id="me", org="healthgov-portal", org_type="patient", role="patient", patient=PID)
CLINICIAN = Caller(id="dr", org="gy-hosp-001", org_type="hospital", role="clinician")


@pytest.fixture
def seeded(engine, vault) -> str:  # type: ignore[no-untyped-def]
    """One patient with one Condition written by gy-hosp-001; returns the pseudonym."""
    patient = vault.pseudonym(PID)
    with Session(engine) as s:
        row = Record(patient=patient, rtype="Condition", rid_index=vault.rid_index("Condition", "c1"), version=1,
                     hospital="gy-hosp-001", content_index="x", submission_id="s", ciphertext=b"")
        vault.seal_row(vault.data_key(s, patient, create=True), row,
                       {"resourceType": "Condition", "id": "c1", "subject": {"reference": f"Patient/{PID}"}}, [])
        s.add(row)
        s.add(CareLink(patient=patient, hospital="gy-hosp-001", expires_at=datetime.now(UTC) + timedelta(days=1)))
        s.commit()
    return patient


# The broker's absence does not depend on the database: one backend is enough.
broker_down = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


@broker_down
def test_a_read_with_the_broker_down_discloses_nothing(engine, vault, seeded, settings) -> None:  # type: ignore[no-untyped-def]
    reader = use_case(Reader, engine, vault, settings, kafka=DEAD)
    with pytest.raises(BrokerUnavailable):
        reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="c1", authority=Authority(purpose="TREAT")))


def test_a_read_with_the_policy_engine_down_is_an_audited_denial(engine, vault, seeded, settings) -> None:  # type: ignore[no-untyped-def]
    reader = use_case(Reader, engine, vault, settings, opa="http://127.0.0.1:9")
    with pytest.raises(Denied) as denied:
        reader.read(CLINICIAN, ReadRequest(rtype="Condition", rid="c1", authority=Authority(purpose="TREAT")))
    assert denied.value.reasons == ["policy_engine_unavailable"] and denied.value.event_id
    ok = use_case(Reader, engine, vault, settings).read(
        CLINICIAN, ReadRequest(rtype="Condition", rid="c1", authority=Authority(purpose="TREAT")))
    assert b'"c1"' in ok.body


@broker_down
def test_a_consent_with_the_broker_down_changes_nothing(engine, vault, seeded, settings) -> None:  # type: ignore[no-untyped-def]
    registry = use_case(ConsentRegistry, engine, vault, settings, kafka=DEAD)
    with pytest.raises(BrokerUnavailable):
        registry.create(PATIENT, permit(PID, "gz-insurer-1", "HPAYMT"), Authority(purpose="PATRQT"))
    with Session(engine) as s:
        assert s.exec(select(ConsentRow)).all() == []


@broker_down
def test_an_erasure_with_the_broker_down_erases_nothing(engine, vault, seeded, settings) -> None:  # type: ignore[no-untyped-def]
    eraser = use_case(Eraser, engine, vault, settings, kafka=DEAD)
    with pytest.raises(BrokerUnavailable):
        eraser.erase(PATIENT, PID, Authority(purpose="PATRQT"))
    with Session(engine) as s:
        key = s.get(PatientKey, seeded)
        assert key is not None and key.wrapped is not None
    assert b'"c1"' in use_case(Reader, engine, vault, settings).read(
        PATIENT, ReadRequest(rtype="Condition", rid="c1", authority=Authority(purpose="PATRQT"))).body


def test_an_erasure_with_the_policy_engine_down_is_refused(engine, vault, seeded, settings) -> None:  # type: ignore[no-untyped-def]
    eraser = use_case(Eraser, engine, vault, settings, opa="http://127.0.0.1:9")
    with pytest.raises(Denied):
        eraser.erase(PATIENT, PID, Authority(purpose="PATRQT"))
    with Session(engine) as s:
        assert s.get(PatientKey, seeded).wrapped is not None  # type: ignore[union-attr]

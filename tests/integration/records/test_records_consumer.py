"""The ingest consumer on a real database: versions, idempotent redelivery, AAD, dead letters, indexes.

Messages are sealed exactly as ingest seals them (``services/ingest/prepare.py``);
dead letters are caught by a recording producer, so each test sees only its own.
Every test runs on SQLite and on a scratch PostgreSQL database (the two write paths differ).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlmodel import Session, select

from services.adapters import crypto
from services.adapters.audit_log import AuditLog
from services.adapters.kafka import Message
from services.contracts.topics import AUDIT_EVENTS, INGEST_DEADLETTER, INGEST_RESOURCES
from services.ingest.labels import DEFAULT_TABLE
from services.ingest.prepare import Context, seal, seal_grouped
from services.records.consumer import IngestHandler
from services.records.gate import Gate
from services.records.notices import NoticeOutbox
from services.records.store import CareLink, IdentifierIndex, Notice, Record, all_versions
from services.records.vault import Vault
from tests.integration.records.support import DEPRESSION, HYPERTENSION, MRN_SYSTEM, Rec, condition

HOSPITAL = "gy-hosp-001"


class Recorder:
    """A producer that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send_all(self, messages: list[Message]) -> None:
        self.sent.extend(messages)

    def send(self, message: Message) -> None:
        self.sent.append(message)

    def reasons(self) -> list[str]:
        return [orjson.loads(m.value)["reason"] for m in self.sent if m.topic == INGEST_DEADLETTER.name]

    def audit(self) -> list[dict[str, Any]]:
        return [orjson.loads(m.value) for m in self.sent if m.topic == AUDIT_EVENTS.name]


def context(keys: Any) -> Context:
    return Context(records_public_key=keys.records_hpke_public(), pseudonym_key=keys.pseudonym_key(),
                   labels_file=str(DEFAULT_TABLE))


def records(messages: list[Message], first_offset: int = 0) -> list[Rec]:
    return [Rec(m.topic, 0, first_offset + n, m.key, m.value) for n, m in enumerate(messages)]


def sealed(keys: Any, *resources: dict[str, Any], hospital: str = HOSPITAL) -> list[Rec]:
    return records(seal_grouped(context(keys), submission_id=str(uuid.uuid4()), hospital=hospital,
                                resources=[orjson.loads(orjson.dumps(r)) for r in resources]))


def patient(pid: str, mrn: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female",
            "identifier": [{"system": MRN_SYSTEM, "value": mrn}, {"system": MRN_SYSTEM},
                           {"system": "urn:other", "value": mrn}]}


def newest(engine: Any, vault: Vault, rtype: str, rid: str) -> tuple[Record, dict[str, Any], list[str]]:
    with Session(engine) as s:
        row = all_versions(s, vault.rid_index(rtype, rid))[-1]
        plain = vault.open_row(s, row)
        return row, plain.resource, plain.labels


def encounter(pid: str, *, end: datetime | str | None, status: str = "finished") -> dict[str, Any]:
    """An Encounter of ``pid``; ``end=None``: under way."""
    period: dict[str, str] = {"start": "2023-01-01T08:00:00Z"}
    if end is not None:
        period["end"] = end if isinstance(end, str) else end.isoformat()
    return {"resourceType": "Encounter", "id": str(uuid.uuid4()), "status": status, "period": period,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{pid}"}}


@pytest.fixture
def handler(engine, vault, private_keys) -> IngestHandler:  # type: ignore[no-untyped-def]
    recorder = Recorder()
    return IngestHandler(engine=engine, vault=vault, hpke_private=private_keys.records_hpke_private(),
                         producer=recorder, gate=Gate(AuditLog(recorder), NoticeOutbox(engine)),  # type: ignore[arg-type]
                         care_window=timedelta(days=30))


def test_new_content_is_a_new_version_and_redelivery_stores_nothing(handler, engine, vault,  # type: ignore[no-untyped-def]
                                                                    private_keys) -> None:
    pid = str(uuid.uuid4())
    cond = condition(pid, DEPRESSION, "2020-01-01")
    first = sealed(private_keys, patient(pid, "MRN-1"), cond)
    handler(first)
    handler(first)  # redelivered after a crash before the offset commit
    handler(sealed(private_keys, cond))  # the same content under another submission
    assert handler.stored == 2
    changed = {**cond, "onsetDateTime": "2021-06-01"}
    handler(sealed(private_keys, changed, changed))  # one batch, twice: one new version
    assert handler.stored == 3
    row, resource, labels = newest(engine, vault, "Condition", cond["id"])
    assert (row.version, row.patient, row.rtype, row.hospital) == (2, vault.pseudonym(pid), "Condition", HOSPITAL)
    assert resource["onsetDateTime"] == "2021-06-01" and resource["id"] == cond["id"]
    assert resource["meta"]["versionId"] == "2" and resource["meta"]["source"] == HOSPITAL
    assert resource["meta"]["lastUpdated"].startswith("20")
    assert labels == ["PSY"]
    with Session(engine) as s:
        versions = all_versions(s, vault.rid_index("Condition", cond["id"]))
        assert [v.version for v in versions] == [1, 2]
        assert vault.open_row(s, versions[0]).resource["onsetDateTime"] == "2020-01-01"
        assert versions[0].content_index != versions[1].content_index
        assert versions[0].submission_id != versions[1].submission_id


def test_versions_follow_each_other_within_one_batch(handler, engine, vault, private_keys) -> None:  # type: ignore[no-untyped-def]
    pid = str(uuid.uuid4())
    cond = condition(pid, HYPERTENSION, "2019-01-01")
    batch = [*sealed(private_keys, cond), *sealed(private_keys, {**cond, "onsetDateTime": "2019-02-01"}),
             *sealed(private_keys, {**cond, "onsetDateTime": "2019-03-01"})]
    handler(batch)
    handler(batch[-1:])  # the newest content again: nothing new
    with Session(engine) as s:
        versions = all_versions(s, vault.rid_index("Condition", cond["id"]))
        got = [(v.version, vault.open_row(s, v).resource["onsetDateTime"]) for v in versions]
    assert got == [(1, "2019-01-01"), (2, "2019-02-01"), (3, "2019-03-01")]


def test_identifier_indexes_are_made_once(handler, engine, vault, private_keys) -> None:  # type: ignore[no-untyped-def]
    pid, other = str(uuid.uuid4()), str(uuid.uuid4())
    org = {"resourceType": "Organization", "id": str(uuid.uuid4()), "name": "Clinic"}
    handler(sealed(private_keys, patient(pid, "MRN-A"), condition(pid, HYPERTENSION, "2020-01-01"), org))
    handler(sealed(private_keys, {**patient(pid, "MRN-A"), "gender": "male"}, patient(other, "MRN-B")))
    me, them = vault.pseudonym(pid), vault.pseudonym(other)
    with Session(engine) as s:
        idents = sorted((i.identifier_index, i.patient) for i in s.exec(select(IdentifierIndex)).all())
        directory = s.exec(select(Record).where(Record.rtype == "Organization")).one()
    assert idents == sorted([(vault.identifier_index(MRN_SYSTEM, "MRN-A"), me),
                             (vault.identifier_index("urn:other", "MRN-A"), me),
                             (vault.identifier_index(MRN_SYSTEM, "MRN-B"), them),
                             (vault.identifier_index("urn:other", "MRN-B"), them)])
    assert directory.patient == "directory"
    assert newest(engine, vault, "Patient", pid)[0].version == 2


def test_a_write_grants_no_care_only_a_current_encounter_does(handler, engine, vault, private_keys) -> None:  # type: ignore[no-untyped-def]
    """Records about a patient, or an encounter long over, give their sender nothing."""
    pid = str(uuid.uuid4())
    now = datetime.now(UTC)
    handler(sealed(private_keys, patient(pid, "MRN-C"), condition(pid, HYPERTENSION, "2020-01-01")))
    handler(sealed(private_keys, condition(pid, DEPRESSION, "2021-01-01"), hospital="gy-hosp-002"))
    handler(sealed(private_keys, encounter(pid, end="2023-01-01T09:00:00Z")))  # over for years
    handler(sealed(private_keys, encounter(pid, end=None, status="cancelled"), hospital="gy-hosp-002"))
    with Session(engine) as s:
        assert s.exec(select(CareLink)).all() == []
        assert s.exec(select(Notice)).all() == []
    assert handler.producer.audit() == []  # type: ignore[attr-defined]
    handler(sealed(private_keys, encounter(pid, end=now - timedelta(days=1))))
    handler(sealed(private_keys, encounter(pid, end=None, status="in-progress"), hospital="gy-hosp-002"))
    handler(sealed(private_keys, encounter(pid, end=now - timedelta(hours=2))))  # HOSPITAL again: extends
    me = vault.pseudonym(pid)
    with Session(engine) as s:
        links = {c.hospital: c for c in s.exec(select(CareLink).where(CareLink.patient == me)).all()}
        notices = sorted((n.kind, n.org) for n in s.exec(select(Notice).where(Notice.patient == me)).all())
    assert sorted(links) == [HOSPITAL, "gy-hosp-002"]
    assert {c.source for c in links.values()} == {"encounter"}
    mine = links[HOSPITAL].expires_at
    mine = mine if mine.tzinfo else mine.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    assert now + timedelta(days=29) < mine <= now + timedelta(days=30)  # the newer encounter's end + window
    assert notices == [("first_access", HOSPITAL), ("first_access", "gy-hosp-002")]
    events = handler.producer.audit()  # type: ignore[attr-defined]
    assert sorted((e["kind"], e["accessor"]["org"], e["patient"]) for e in events) == [
        ("care_relationship", HOSPITAL, me), ("care_relationship", "gy-hosp-002", me)]


def test_unreadable_messages_are_dead_lettered_and_the_rest_stored(handler, engine, vault,  # type: ignore[no-untyped-def]
                                                                   private_keys) -> None:
    pid = str(uuid.uuid4())
    good = sealed(private_keys, condition(pid, HYPERTENSION, "2020-01-01"))[0]
    env = orjson.loads(good.value)
    wrong_key = good._replace(key=b"p-someone-else")  # the seal is bound to the record key
    tampered = good._replace(value=orjson.dumps({**env, "sealed": base64.b64encode(b"\x01" * 80).decode()}))
    ctx = context(private_keys)
    uneven = seal(ctx, submission_id="s-uneven", hospital=HOSPITAL, kind="resource", key="directory",
                  resources=[{"resourceType": "Organization", "id": "o1"}], patients=[None, None])
    bad_payloads = [
        crypto.seal(payload, ctx.records_public_key, f"s-{n}|{HOSPITAL}|directory".encode())
        for n, payload in enumerate([b"[]", orjson.dumps({"resources": [1], "labels": [[]], "patients": [None]}),
                                     orjson.dumps({"resources": [{}], "labels": [[1]], "patients": [None]}),
                                     orjson.dumps({"resources": [{}], "labels": [[]], "patients": [7]}),
                                     orjson.dumps({"resources": {}, "labels": [], "patients": []}),
                                     b"{not json"])]
    shapes = [Rec(INGEST_RESOURCES.name, 0, 100 + n, b"directory", orjson.dumps(
        {**env, "submission_id": f"s-{n}", "sealed": crypto.b64e(blob)})) for n, blob in enumerate(bad_payloads)]
    handler([good._replace(value=b"{not json"), wrong_key, tampered, *records([uneven]), *shapes, good])
    reasons = handler.producer.reasons()
    assert len(reasons) == 4 + len(shapes), reasons
    assert reasons[0].startswith("not an ingest envelope")
    assert all(r.startswith("sealed payload rejected") for r in reasons[1:3] + reasons[4:])
    assert reasons[3] == "sealed payload lists differ in length"
    assert handler.stored == 1
    assert {m.key for m in handler.producer.sent} >= {good.key, b"p-someone-else", b"directory"}


def test_resources_of_an_erased_patient_are_dead_lettered_not_stored(handler, engine, vault,  # type: ignore[no-untyped-def]
                                                                     private_keys) -> None:
    gone, kept = str(uuid.uuid4()), str(uuid.uuid4())
    handler(sealed(private_keys, condition(gone, HYPERTENSION, "2020-01-01")))
    with Session(engine) as s:
        vault.shred(s, vault.pseudonym(gone))
        s.commit()
    late = sealed(private_keys, condition(gone, DEPRESSION, "2021-01-01"))
    handler([*late, *sealed(private_keys, condition(kept, HYPERTENSION, "2020-01-01"))])
    assert handler.producer.reasons() == ["patient erased: resources not stored"]
    assert handler.producer.sent[0].key == late[0].key
    assert handler.stored == 2
    with Session(engine) as s:
        assert len(s.exec(select(Record).where(Record.patient == vault.pseudonym(gone))).all()) == 1


def test_a_stored_row_opens_only_under_its_own_columns(handler, engine, vault, private_keys) -> None:  # type: ignore[no-untyped-def]
    pid = str(uuid.uuid4())
    a, b = condition(pid, HYPERTENSION, "2020-01-01"), condition(pid, DEPRESSION, "2020-01-02")
    handler(sealed(private_keys, a, b))
    with Session(engine) as s:
        row_a = all_versions(s, vault.rid_index("Condition", a["id"]))[0]
        row_b = all_versions(s, vault.rid_index("Condition", b["id"]))[0]
        assert vault.open_row(s, row_a).resource["id"] == a["id"]
        s.expunge(row_b)
        row_b.ciphertext = row_a.ciphertext
        with pytest.raises(crypto.DecryptionError):
            vault.open_row(s, row_b)

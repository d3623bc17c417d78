"""The consent registry's consumer: idempotent, ordered, and it never loses a message.

Changes are built exactly as the records API puts them on ``consent.changes.v1``;
the dead-letter topic is the stack's real Kafka, read back to find ours.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from sqlmodel import Session, select

from services.adapters import crypto
from services.adapters.kafka import Producer
from services.contracts.events import Accessor, ConsentChange
from services.contracts.topics import CONSENT_CHANGES, INGEST_DEADLETTER
from services.records import consents
from services.records.consent_consumer import ConsentChangeHandler
from services.records.store import ConsentRow, latest_consents
from tests.integration.records.support import Rec, permit


def change(engine: Any, vault: Any, pid: str, consent: dict[str, Any], kind: str = "created") -> Rec:
    patient = vault.pseudonym(pid)
    with Session(engine) as s:
        dk = vault.data_key(s, patient, create=True)
        s.commit()
    msg = ConsentChange(change=kind, patient=patient, consent_index=vault.consent_index(consent["id"]),  # type: ignore[arg-type]
                        accessor=Accessor(id="me", org="healthgov-portal", org_type="patient", role="patient"),
                        event_id="e", sealed="")
    msg.sealed = crypto.b64e(vault.seal_change(dk, patient, msg.change_id, consent))
    return Rec(CONSENT_CHANGES.name, 0, 0, patient.encode(), msg.model_dump_json(by_alias=True).encode())


def dead_letters_since(settings: Any, offset: int) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    tp = TopicPartition(INGEST_DEADLETTER.name, 0)
    consumer.assign([tp])
    consumer.seek(tp, offset)
    out = [orjson.loads(m.value) for m in consumer]
    consumer.close()
    return out


def end_offset(settings: Any) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    tp = TopicPartition(INGEST_DEADLETTER.name, 0)
    end = consumer.end_offsets([tp])[tp]
    consumer.close()
    return end


def test_changes_apply_in_order_and_redelivery_is_a_no_op(engine, vault, settings) -> None:  # type: ignore[no-untyped-def]
    pid = f"pt-{uuid.uuid4()}"
    v1 = consents.with_identity(consents.parse(permit(pid, "gz-insurer-1", "HPAYMT")), "k1", 1, "t1")
    v2 = consents.with_identity(consents.revoked(v1), "k1", 2, "t2")
    created, revoked = change(engine, vault, pid, v1), change(engine, vault, pid, v2, "revoked")
    producer = Producer(settings.kafka_bootstrap, "healthgov-records-test")
    handler = ConsentChangeHandler(engine=engine, vault=vault, producer=producer)
    handler([created, revoked])
    handler([created, revoked, created])  # redelivered after a crash before the offset commit
    producer.close()
    assert handler.applied == 2
    with Session(engine) as s:
        rows = s.exec(select(ConsentRow)).all()
        assert sorted(r.version for r in rows) == [1, 2]
        (latest,) = latest_consents(s, vault.pseudonym(pid))
        assert vault.open_consent(s, latest)["status"] == "inactive"


def test_unreadable_and_conflicting_changes_go_to_the_dead_letter_topic(engine, vault, settings) -> None:  # type: ignore[no-untyped-def]
    pid = f"pt-{uuid.uuid4()}"
    v1 = consents.with_identity(consents.parse(permit(pid, "gz-insurer-1", "HPAYMT")), "k2", 1, "t1")
    rival = consents.with_identity(consents.parse(permit(pid, "gy-datamart", "HMARKT")), "k2", 1, "t1")
    first, second = change(engine, vault, pid, v1), change(engine, vault, pid, rival)
    tampered = orjson.loads(change(engine, vault, pid, v1).value)
    tampered["sealed"] = crypto.b64e(b"\x00" * 64)
    start = end_offset(settings)
    producer = Producer(settings.kafka_bootstrap, "healthgov-records-test")
    handler = ConsentChangeHandler(engine=engine, vault=vault, producer=producer)
    handler([first, second, first._replace(value=b"{not json"), first._replace(value=orjson.dumps(tampered))])
    producer.close()
    assert handler.applied == 1
    reasons = [d["reason"] for d in dead_letters_since(settings, start)
               if d["topic"] == CONSENT_CHANGES.name]
    assert len(reasons) == 3, reasons
    assert any("already made by change" in r for r in reasons)
    assert any("not a consent change" in r for r in reasons)
    assert any("sealed consent rejected" in r for r in reasons)
    with Session(engine) as s:
        (only,) = s.exec(select(ConsentRow)).all()
        assert consents.to_policy(vault.open_consent(s, only))[0]["grantee"] == "gz-insurer-1"


def test_a_change_for_an_erased_patient_is_dropped(engine, vault, settings) -> None:  # type: ignore[no-untyped-def]
    pid = f"pt-{uuid.uuid4()}"
    rec = change(engine, vault, pid, consents.with_identity(consents.parse(permit(pid, "x", "HPAYMT")), "k3", 1, "t"))
    with Session(engine) as s:
        vault.shred(s, vault.pseudonym(pid))
        s.commit()
    producer = Producer(settings.kafka_bootstrap, "healthgov-records-test")
    handler = ConsentChangeHandler(engine=engine, vault=vault, producer=producer)
    handler([rec])
    producer.close()
    with Session(engine) as s:
        assert s.exec(select(ConsentRow)).all() == []

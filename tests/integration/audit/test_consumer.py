"""The audit consumer on the real Kafka: duplicates, poison, a crash before the offset commit.

Each test uses its own topic and consumer group, and its own database, so the
platform's log is not touched; the dead-letter topic is the platform's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from services.adapters.config import PlatformSettings
from services.adapters.kafka import ConsumerLoop, Message, Producer, ensure_topics
from services.audit import store
from services.audit.consumer import AuditHandler
from services.audit.log import MerkleLog
from services.contracts.topics import INGEST_DEADLETTER, Topic
from services.tlog.canonical import canonical_json
from tests.conftest import wait_for
from tests.integration.audit.conftest import Db
from tests.unit.audit.factory import event


@pytest.fixture
def topic(settings: PlatformSettings, stack) -> Iterator[Topic]:  # type: ignore[no-untyped-def]
    t = Topic(f"test.audit.events.{uuid.uuid4().hex[:10]}", 1)
    ensure_topics(settings.kafka_bootstrap, [t])
    yield t
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.delete_topics([t.name])
    finally:
        admin.close()


@pytest.fixture
def producer(settings: PlatformSettings) -> Iterator[Producer]:
    p = Producer(settings.kafka_bootstrap, "healthgov-audit-test")
    yield p
    p.close()


def _end_offset(bootstrap: str, topic: str) -> int:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        return int(c.end_offsets([tp])[tp])
    finally:
        c.close()


def _dead_letters(bootstrap: str, since: int, about: str, want: int) -> list[dict[str, Any]]:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000)
    tp = TopicPartition(INGEST_DEADLETTER.name, 0)
    c.assign([tp])
    c.seek(tp, since)
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    try:
        while len(found) < want and time.monotonic() < deadline:
            for rec in c.poll(timeout_ms=1000).get(tp, []):
                doc = orjson.loads(rec.value)
                if doc["topic"] == about:
                    found.append(doc)
    finally:
        c.close()
    return found


def _committed(bootstrap: str, group: str, topic: str) -> int | None:
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return c.committed(TopicPartition(topic, 0))
    finally:
        c.close()


class CrashOnce:
    """The handler's DB commit succeeds, then the process 'dies' before the offsets are committed."""

    def __init__(self, inner: AuditHandler) -> None:
        self.inner, self.crashed = inner, False

    def __call__(self, records: list[Any]) -> None:
        self.inner(records)
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("crash between the database commit and the offset commit")


def test_duplicates_poison_and_a_crash_leave_one_entry_per_event(db: Db, topic: Topic, producer: Producer,
                                                                 settings: PlatformSettings) -> None:
    store.migrate(db.url)
    log = MerkleLog(store.connect(db.url))
    docs = [event(accessor={"id": f"u{i}", "org": "gy-hosp-001", "org_type": "hospital", "role": "c"})
            for i in range(60)]
    bodies = [canonical_json(d) for d in docs]
    altered = canonical_json({**docs[3], "purpose": "HMARKT"})  # a replay with other content
    poison = [b"\xff not json", b'{"schema": "healthgov.audit.event.v1", "kind": "disclosure"}',
              orjson.dumps({**docs[0], "kind": "exfiltration", "event_id": str(uuid.uuid4())}),
              # Valid JSON events PostgreSQL could not store or index: refused, not left to block the topic.
              orjson.dumps({**docs[1], "event_id": str(uuid.uuid4()), "accessor": {**docs[1]["accessor"],
                                                                                   "id": "nul\u0000"}}),
              orjson.dumps({**docs[2], "event_id": str(uuid.uuid4()), "purpose": "P" * 5000})]
    sequence = bodies[:30] + bodies[10:20] + [poison[0], poison[3]] + bodies[30:45] + [altered, poison[1]] \
        + bodies[45:] + [poison[4]] + bodies[:5] + [poison[2]]
    dl_start = _end_offset(settings.kafka_bootstrap, INGEST_DEADLETTER.name)
    producer.send_all([Message(topic.name, v) for v in sequence])

    handler = AuditHandler(log, producer)
    group = f"test-audit-{uuid.uuid4().hex[:8]}"
    crash = CrashOnce(handler)
    loop = ConsumerLoop(bootstrap=settings.kafka_bootstrap, topic=topic, group_id=group,
                        handler=crash, max_records=25)
    loop.start()
    try:
        # The messages went in one transaction: its commit marker takes the offset after the last of them.
        wait_for(lambda: _committed(settings.kafka_bootstrap, group, topic.name) == len(sequence) + 1, 90,
                 "every offset committed")
    finally:
        loop.stop()
    assert crash.crashed and handler.appended == 60
    assert log.size() == 60
    assert [bytes(r.body) for r in log.entries(0, 60)] == bodies  # one total order: the topic's
    dead = _dead_letters(settings.kafka_bootstrap, dl_start, topic.name, 6)
    reasons = sorted(d["reason"] for d in dead)
    assert len({(d["offset"], d["reason"]) for d in dead}) == 6, reasons
    assert any("not JSON" in r for r in reasons)
    assert sum("not a healthgov.audit.event.v1 event" in r for r in reasons) == 2
    assert any(f"event_id {docs[3]['event_id']} is already logged with other content" in r for r in reasons)
    assert sum("longer than 256 characters or holds a NUL" in r for r in reasons) == 2
    poison_offsets = {sequence.index(p) for p in poison} | {sequence.index(altered)}
    assert {d["offset"] for d in dead} == poison_offsets

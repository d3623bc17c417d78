"""Kafka entrypoint of audit: append ``audit.events.v1`` to the Merkle log.

The topic has one partition, so the log has one total order: Kafka's. A batch
is one database transaction, and the consumer loop commits offsets only after
it. Appends skip event ids already logged, so redelivery never duplicates an
entry.

A message that is not an AuditEvent cannot enter the log, but it is never
dropped in silence: it goes to the dead-letter topic with the reason, and is
acknowledged by the broker *before* the batch's offsets are committed. So is an
event whose id is already logged with different content (a replay that was
altered). Validation also refuses what the database could not index (NUL
characters, oversized fields), so every event that passes it can be stored. A
database failure is therefore never the message's fault: the batch raises,
offsets stay uncommitted, the loop redelivers it, and ``/healthz`` shows the
consumer unhealthy until the database is back. Nothing is lost either way.
"""

from __future__ import annotations

import base64
import logging
from typing import Any, Protocol

from pydantic import ValidationError

from services.adapters import telemetry
from services.adapters.kafka import Message
from services.audit.log import Appended, MerkleLog
from services.contracts.events import AUDIT_EVENT_SCHEMA, AuditEvent, DeadLetter
from services.contracts.topics import INGEST_DEADLETTER
from services.tlog.canonical import canonical_json

log = logging.getLogger(__name__)


class DeadLetterSink(Protocol):
    def send_all(self, messages: list[Message]) -> None: ...


MAX_FIELD = 256  # characters in any field the log indexes


def canonical_event(value: bytes) -> tuple[str, bytes]:
    """Validate one message as an AuditEvent; return its id and RFC 8785 bytes.

    The producer must set ``event_id`` and ``occurred_at`` itself: filled in
    here from defaults, a redelivered copy would get a new id and a new time,
    and be logged twice. Raises ``ValueError`` (with a reason fit for the
    dead-letter topic) otherwise.
    """
    try:
        event = AuditEvent.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise ValueError(f"not JSON: {first['msg']}") from exc
        raise ValueError(f"not a {AUDIT_EVENT_SCHEMA} event ({exc.error_count()} errors; first: "
                         f"{'.'.join(map(str, first['loc']))}: {first['msg']})") from exc
    missing = {"event_id", "occurred_at"} - event.model_fields_set
    if missing:
        raise ValueError(f"not a {AUDIT_EVENT_SCHEMA} event: the producer did not set {', '.join(sorted(missing))}")
    acc = event.accessor
    for name, field in (("event_id", event.event_id), ("occurred_at", event.occurred_at), ("patient", event.patient),
                        ("purpose", event.purpose), ("accessor.id", acc.id), ("accessor.org", acc.org),
                        ("accessor.org_type", acc.org_type), ("accessor.role", acc.role)):
        # Indexed columns: a value no index can hold would block the topic instead of one event.
        if field is not None and (len(field) > MAX_FIELD or "\x00" in field):
            raise ValueError(f"{name} is longer than {MAX_FIELD} characters or holds a NUL character")
    doc = event.model_dump(mode="json", by_alias=True)
    # The schema types everything but these as strings, booleans and lists of them; only the
    # free-form objects can hold values where orjson and RFC 8785 differ (see canonical.py).
    free_form = (doc["legal"], doc["details"], (doc["decision"] or {}).get("obligations"))
    return event.event_id, canonical_json(doc, free_form=free_form)


class AuditHandler:
    """Consumer-loop handler: validate, dead-letter the poison, append the rest."""

    def __init__(self, merkle_log: MerkleLog, dead_letters: DeadLetterSink) -> None:
        self.log = merkle_log
        self.dead_letters = dead_letters
        self.appended = 0
        self.dead_lettered = 0

    @staticmethod
    def _dead(rec: Any, reason: str) -> Message:
        dl = DeadLetter(topic=rec.topic, partition=rec.partition, offset=rec.offset, reason=reason,
                        original=base64.b64encode(rec.value or b"").decode())
        return Message(INGEST_DEADLETTER.name, dl.model_dump_json(by_alias=True).encode(), rec.key)

    def __call__(self, records: list[Any]) -> None:
        bodies: list[bytes] = []
        origin: dict[str, Any] = {}
        dead: list[Message] = []
        for rec in records:
            try:
                event_id, body = canonical_event(rec.value)
            except Exception as exc:  # pure code: whatever fails here is this message's fault
                log.error("audit: dead-letter %s:%s@%s: %s", rec.topic, rec.partition, rec.offset, exc)
                dead.append(self._dead(rec, str(exc) if isinstance(exc, ValueError) else repr(exc)))
                continue
            bodies.append(body)
            origin[event_id] = rec  # the last copy is the one that can conflict
        result = self.log.append(bodies) if bodies else Appended(size=0, new=0)
        for event_id in result.conflicts:
            log.error("audit: event %s arrived again with different content", event_id)
            dead.append(self._dead(origin[event_id], f"event_id {event_id} is already logged with other content"))
        if dead:
            self.dead_letters.send_all(dead)  # acks=all, before the loop commits the offsets
            self.dead_lettered += len(dead)
        self.appended += result.new
        telemetry.AUDIT_APPENDED.inc(result.new)
        if result.size:
            telemetry.AUDIT_TREE_SIZE.set(result.size)

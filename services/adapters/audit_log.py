"""The one way any service puts an event on the audit log.

Every accountable act (a disclosure, a refusal, a submission, a consent
change, an erasure, a key rotation) is an AuditEvent on ``audit.events.v1``.
This module is the only code that names that topic for producing
(``tests/unit/test_architecture.py`` holds it to that), so the rule
"published with acks=all before the act takes effect" lives in one place:
``publish`` returns only once the broker has the event, together with any
messages the event accounts for, in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.adapters.kafka import Message
from services.contracts.events import AuditEvent
from services.contracts.topics import AUDIT_EVENTS


class Publisher(Protocol):
    """What the audit log needs of a producer (the Kafka adapter's ``Producer``, or a fake in unit tests)."""

    def send(self, message: Message) -> None: ...

    def send_all(self, messages: Sequence[Message]) -> None: ...


def audit_message(event: AuditEvent) -> Message:
    """The Kafka message of an event: its canonical bytes, which the Merkle leaf hashes."""
    return Message(AUDIT_EVENTS.name, event.canonical())


class AuditLog:
    """Publishes events, alone or with the messages they account for."""

    def __init__(self, producer: Publisher) -> None:
        self.producer = producer

    def publish(self, event: AuditEvent, together: Sequence[Message] = ()) -> str:
        """Return the event id once the broker acknowledged the event (and ``together``, atomically).

        Raises the producer's ``BrokerUnavailable`` otherwise: the caller must
        then not let the act take effect.
        """
        if together:
            self.producer.send_all([*together, audit_message(event)])
        else:
            self.producer.send(audit_message(event))
        return event.event_id

    def publish_all(self, events: Sequence[AuditEvent]) -> list[str]:
        """Publish many events in one transaction: all are logged or none is (one broker round trip, not N).

        For acts made of many accountable parts at once, such as a research
        export's per-patient disclosures: each part keeps its own event (its
        own Merkle leaf, in its patient's trail) without one acks=all wait each.
        """
        self.producer.send_all([audit_message(e) for e in events])
        return [e.event_id for e in events]

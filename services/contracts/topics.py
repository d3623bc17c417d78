"""Kafka topic names and partition counts (docs/architecture.md §3).

Every producer and consumer takes topic names from here, never from literals,
so that a rename is one edit and a grep finds every user.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """A topic and the partition count it is created with."""

    name: str
    partitions: int


INGEST_RESOURCES = Topic("ingest.resources.v1", 6)
INGEST_DEADLETTER = Topic("ingest.deadletter.v1", 1)
CONSENT_CHANGES = Topic("consent.changes.v1", 6)
# One partition: the audit log is one total order.
AUDIT_EVENTS = Topic("audit.events.v1", 1)

ALL_TOPICS: tuple[Topic, ...] = (INGEST_RESOURCES, INGEST_DEADLETTER, CONSENT_CHANGES, AUDIT_EVENTS)

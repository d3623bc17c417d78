"""Kafka topic names, partition counts and message-size limits (docs/architecture.md §3).

Every producer and consumer takes topic names from here, never from literals,
so that a rename is one edit and a grep finds every user.

Sizes are one chain, each link derived from the one before, so that whatever
ingest accepts is carried everywhere it travels:

- a resource is at most ``MAX_RESOURCE_BYTES`` of compact JSON (a hospital's
  DocumentReference with a scanned document or a PDF in base64 is a few MB);
- ingest packs resources into a sealed message of at most
  ``MAX_INGEST_MESSAGE_BYTES`` (base64 of the HPKE ciphertext: 4/3 of the
  payload, plus the envelope), so one largest resource always fits alone;
- ``ingest.resources.v1`` accepts records a little larger than that (the
  record batch's own framing);
- a dead letter carries the original message in base64 inside JSON, so the
  dead-letter topic takes 4/3 of the largest topic it receives from;
- the broker's ``replica.fetch.max.bytes``, the producer's
  ``message.max.bytes`` and consumers' ``max_partition_fetch_bytes`` are set
  from these numbers (services/adapters/kafka.py, services/cli/stack.py).
"""

from dataclasses import dataclass

MiB = 1024 * 1024

MAX_RESOURCE_BYTES = 8 * MiB
MAX_INGEST_MESSAGE_BYTES = 12 * MiB


@dataclass(frozen=True)
class Topic:
    """A topic, the partition count it is created with and the largest record it accepts."""

    name: str
    partitions: int
    max_message_bytes: int = 10 * MiB

    @property
    def configs(self) -> dict[str, str]:
        """Topic-level settings applied when the topic is created, and again at every start."""
        return {"max.message.bytes": str(self.max_message_bytes)}


INGEST_RESOURCES = Topic("ingest.resources.v1", 6, MAX_INGEST_MESSAGE_BYTES + 1 * MiB)
CONSENT_CHANGES = Topic("consent.changes.v1", 6, 10 * MiB)
# One partition: the audit log is one total order.
AUDIT_EVENTS = Topic("audit.events.v1", 1, 10 * MiB)
# One PHI-free quality report per submission (counts, codes' systems, lags), keyed by hospital.
QUALITY_REPORTS = Topic("ingest.quality.v1", 3, 1 * MiB)
# Dead letters of the other topics' messages: the original in base64 (4/3 of it) plus the reason.
INGEST_DEADLETTER = Topic("ingest.deadletter.v1", 1, max(
    t.max_message_bytes for t in (INGEST_RESOURCES, CONSENT_CHANGES, AUDIT_EVENTS, QUALITY_REPORTS)) * 4 // 3 + 1 * MiB)

ALL_TOPICS: tuple[Topic, ...] = (INGEST_RESOURCES, INGEST_DEADLETTER, CONSENT_CHANGES, AUDIT_EVENTS, QUALITY_REPORTS)
# The largest record any topic accepts: the broker's replica fetch and the producer's request limit.
LARGEST_MESSAGE_BYTES = max(t.max_message_bytes for t in ALL_TOPICS)

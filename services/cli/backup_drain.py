"""Before a dump: let every consumer catch up with what the broker has acknowledged.

Kafka is not backed up. What it holds is either already in a database (a
consumer stored it and committed its offset) or in flight: acknowledged to a
hospital, or read by a clinician whose audit event is published, but not yet
stored. A backup taken while data is in flight would leave it out, and a
restored stack starts on empty topics that will never deliver it. So the rule
is: the backup covers everything the broker acknowledged before ``drain``
began. ``drain`` takes every partition's end offset at that moment and waits
until each consumer group has consumed past it; only then is the database
dumped. Writes keep being accepted meanwhile; those later than the drain may
or may not be in the backup, as with any point-in-time copy.

A committed offset alone does not tell: a consumer commits only after a poll
that returned records, so the marker that ends a transaction (or an aborted
transaction) can sit between the committed offset and the end. Where the two
differ, a ``read_committed`` reader of its own looks at what lies between; the
partition is drained when no record a consumer would see is left there.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from services.contracts.topics import Topic

POLL_S = 0.5


class NotDrained(Exception):
    """A consumer did not catch up in time (a service down, or a transaction still open)."""


def _committed(admin: KafkaAdminClient, group: str, topic: str) -> dict[int, int]:
    offsets = admin.list_group_offsets({group: None}).get(group, {})
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}


def _visible_between(bootstrap: str, tp: TopicPartition, start: int, end: int, timeout_s: float) -> bool | None:
    """Whether a read_committed consumer sees a record in [start, end); None: an open transaction hides it."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                           enable_auto_commit=False, group_id=None)
    try:
        reader.assign([tp])
        reader.seek(tp, start)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batches = reader.poll(timeout_ms=300, max_records=1)
            if any(r.offset < end for recs in batches.values() for r in recs):
                return True
            if reader.position(tp) >= end:
                return False
        return None
    finally:
        reader.close()


def drain(bootstrap: str, stages: list[tuple[str, Topic]], timeout_s: float = 120,
          progress: Callable[[str], None] = lambda _m: None) -> dict[str, int]:
    """Wait until each (consumer group, topic) has stored what the topic held when its turn came.

    The stages run in order and each measures its topic's end offsets when it begins: records, storing
    ingested resources, publishes audit events, so the audit log's consumers come after it. Returns the
    end offsets waited for.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="healthgov-backup")
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    waited: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    try:
        for group, topic in stages:
            parts = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
            for tp, end in sorted(probe.end_offsets(parts).items(), key=lambda kv: kv[0].partition):
                waited[f"{group} {tp.topic}[{tp.partition}]"] = end
                while True:
                    done = _committed(admin, group, topic.name).get(tp.partition, 0)
                    if done >= end:
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise NotDrained(f"consumer group {group} is at {done} of {end} on {tp.topic}[{tp.partition}]"
                                         " (is the service that consumes it running?)")
                    if _visible_between(bootstrap, tp, done, end, min(left, 5.0)) is False:
                        break  # only transaction markers or aborted records are left
                    progress(f"waiting for {group} on {tp.topic}[{tp.partition}]: {done} of {end}")
                    time.sleep(POLL_S)
        return waited
    finally:
        probe.close()
        admin.close()

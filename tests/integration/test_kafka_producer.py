"""The producer adapter against the stack's real broker: acknowledged means stored, once.

Callers are told a message is durable only after the broker acknowledged it;
each caller waits for its own messages, however many threads share the
producer; a dead broker is ``BrokerUnavailable``, never a silent success.
Messages sent together are one transaction: all of them or none is visible to
the platform's consumers (which read committed data only).
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kafka import KafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

from services.adapters.config import PlatformSettings
from services.adapters.kafka import BrokerUnavailable, Message, MessageTooLarge, Producer, ensure_topics
from services.contracts.topics import Topic


def fresh_topic(settings: PlatformSettings, partitions: int = 2) -> str:
    topic = Topic(f"test.producer.{uuid.uuid4().hex[:10]}", partitions)
    ensure_topics(settings.kafka_bootstrap, [topic])
    return topic.name


def read_all(settings: PlatformSettings, topic: str, expected: int, timeout_s: float = 30,
             isolation: str = "read_committed") -> list[bytes]:
    """Every value on ``topic`` once ``expected`` have arrived (or the timeout passed).

    ``read_committed`` is how the platform's consumers read; ``read_uncommitted``
    also shows what an aborted transaction wrote to the log.
    """
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, isolation_level=isolation)
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        for records in consumer.poll(timeout_ms=1000).values():  # anything beyond what was sent
            values.extend(r.value for r in records)
    finally:
        consumer.close()
    return values


def test_concurrent_callers_each_get_their_own_acknowledgements(settings: PlatformSettings) -> None:
    topic = fresh_topic(settings)
    producer = Producer(settings.kafka_bootstrap, "test-producer")
    failures: list[BaseException] = []

    def caller(n: int) -> None:
        try:
            for i in range(40):
                producer.send(Message(topic, f"{n}:{i}".encode(), key=str(n).encode()))
        except BaseException as exc:  # reported to the test thread
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    producer.close()
    assert failures == []
    values = read_all(settings, topic, 8 * 40)
    assert sorted(values) == sorted(f"{n}:{i}".encode() for n in range(8) for i in range(40))  # each exactly once
    for n in range(8):  # one key's messages keep their order
        mine = [v for v in values if v.startswith(f"{n}:".encode())]
        assert mine == [f"{n}:{i}".encode() for i in range(40)]


def test_a_stream_of_batches_is_acknowledged_as_a_whole(settings: PlatformSettings) -> None:
    topic = fresh_topic(settings)
    producer = Producer(settings.kafka_bootstrap, "test-producer-stream")
    made: list[int] = []

    def batches():  # type: ignore[no-untyped-def]
        for b in range(5):
            made.append(b)
            yield [Message(topic, f"{b}-{i}".encode() * 1000, key=b"k") for i in range(20)]

    assert producer.send_stream(batches()) == 100
    assert made == [0, 1, 2, 3, 4]
    producer.close()
    values = read_all(settings, topic, 100)
    assert values == [f"{b}-{i}".encode() * 1000 for b in range(5) for i in range(20)]


def test_a_closed_producer_connects_again_on_the_next_send(settings: PlatformSettings) -> None:
    topic = fresh_topic(settings, partitions=1)
    producer = Producer(settings.kafka_bootstrap, "test-producer-reopen")
    producer.send(Message(topic, b"before"))
    producer.close()
    producer.send(Message(topic, b"after"))
    producer.close()
    assert read_all(settings, topic, 2) == [b"before", b"after"]


def test_a_dead_broker_is_broker_unavailable_not_success() -> None:
    producer = Producer("127.0.0.1:9", "test-producer-dead")  # discard port: nothing listens
    with pytest.raises(BrokerUnavailable):
        producer.send(Message("anything", b"x"))
    producer.close()


def test_a_stream_that_fails_half_way_leaves_none_of_its_messages_visible(settings: PlatformSettings) -> None:
    topic = fresh_topic(settings)
    producer = Producer(settings.kafka_bootstrap, "test-producer-abort")
    first = [f"first-{i}".encode() for i in range(10)]

    def batches():  # type: ignore[no-untyped-def]
        yield [Message(topic, v, key=v) for v in first]
        # The first batch reached the broker's log (inside the open transaction)...
        on_log = read_all(settings, topic, len(first), isolation="read_uncommitted")
        assert sorted(on_log) == sorted(first)
        raise RuntimeError("...and then the caller failed while preparing the next batch")

    with pytest.raises(RuntimeError, match="the caller failed"):
        producer.send_stream(batches())
    # The same producer goes on: the next transaction commits, and it is the only one the platform sees.
    producer.send_all([Message(topic, b"after-1", key=b"a"), Message(topic, b"after-2", key=b"a")])
    producer.close()
    assert read_all(settings, topic, 2) == [b"after-1", b"after-2"]


def test_a_message_the_broker_refuses_half_way_aborts_the_others(settings: PlatformSettings) -> None:
    topic = f"test.producer.small.{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "2000"})])
    finally:
        admin.close()
    producer = Producer(settings.kafka_bootstrap, "test-producer-refused")
    # Refused for its size: permanent (MessageTooLarge, answered 413), not an outage to retry (503).
    with pytest.raises(MessageTooLarge):
        producer.send_all([Message(topic, b"small-1"), Message(topic, b"x" * 5000), Message(topic, b"small-2")])
    producer.send_all([Message(topic, b"ok-1"), Message(topic, b"ok-2")])
    producer.close()
    assert read_all(settings, topic, 2) == [b"ok-1", b"ok-2"]


def test_messages_sent_together_to_two_topics_are_all_visible(settings: PlatformSettings) -> None:
    first, second = fresh_topic(settings), fresh_topic(settings)
    producer = Producer(settings.kafka_bootstrap, "test-producer-two-topics")
    producer.send_all([Message(first, b"data", key=b"p"), Message(second, b"its audit event")])
    producer.close()
    assert read_all(settings, first, 1) == [b"data"]
    assert read_all(settings, second, 1) == [b"its audit event"]

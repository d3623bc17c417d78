"""The producer adapter against the stack's real broker: acknowledged means stored, once.

Callers are told a message is durable only after the broker acknowledged it;
each caller waits for its own messages, however many threads share the
producer; a dead broker is ``BrokerUnavailable``, never a silent success.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kafka import KafkaConsumer

from services.adapters.config import PlatformSettings
from services.adapters.kafka import BrokerUnavailable, Message, Producer, ensure_topics
from services.contracts.topics import Topic


def fresh_topic(settings: PlatformSettings, partitions: int = 2) -> str:
    topic = Topic(f"test.producer.{uuid.uuid4().hex[:10]}", partitions)
    ensure_topics(settings.kafka_bootstrap, [topic])
    return topic.name


def read_all(settings: PlatformSettings, topic: str, expected: int, timeout_s: float = 30) -> list[bytes]:
    """Every value on ``topic`` once ``expected`` have arrived (or the timeout passed)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None)
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

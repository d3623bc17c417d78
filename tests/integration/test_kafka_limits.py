"""Message-size limits on the stack's real broker: each topic carries what ingest accepts, no more.

The sizes are one chain (services/contracts/topics.py). Here the broker is
asked what it enforces, a topic left from an older version gets the limits at
the next start, a record as large as the chain allows is carried and read
back, and one larger is ``MessageTooLarge`` (permanent, answered 413), never
``BrokerUnavailable`` (503, which tells a client to retry forever).
"""

from __future__ import annotations

import os
import uuid

import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from services.adapters.config import PlatformSettings
from services.adapters.kafka import RECORD_FRAMING_BYTES, Message, MessageTooLarge, Producer, ensure_topics
from services.contracts.topics import ALL_TOPICS, INGEST_DEADLETTER, INGEST_RESOURCES, MiB, Topic
from tests.integration.test_kafka_producer import read_all


def _max_message_bytes(settings: PlatformSettings, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                       config_filter="all")
    finally:
        admin.close()
    # {resource type: {topic: {config key: config data}}}
    [entries] = [configs for by_name in found.values() for configs in by_name.values()]
    value = entries["max.message.bytes"]
    return int(value["value"] if isinstance(value, dict) else value)


def test_every_platform_topic_enforces_its_contract_limit(stack, settings: PlatformSettings) -> None:
    for topic in ALL_TOPICS:
        assert _max_message_bytes(settings, topic.name) == topic.max_message_bytes, topic.name
    # A dead letter of the largest ingest record (base64 in JSON) fits the dead-letter topic.
    assert INGEST_DEADLETTER.max_message_bytes > INGEST_RESOURCES.max_message_bytes * 4 // 3


def test_a_topic_from_an_older_start_gets_the_limits_again(stack, settings: PlatformSettings) -> None:
    name = f"test.limits.{uuid.uuid4().hex[:10]}"
    ensure_topics(settings.kafka_bootstrap, [Topic(name, 1)])  # created with the default limit
    assert _max_message_bytes(settings, name) == 10 * MiB
    ensure_topics(settings.kafka_bootstrap, [Topic(name, 1, 20 * MiB)])  # the next start, a larger contract
    assert _max_message_bytes(settings, name) == 20 * MiB


@pytest.mark.parametrize("transactional", [False, True])
def test_the_largest_record_is_carried_and_a_larger_one_is_permanently_refused(
        stack, settings: PlatformSettings, transactional: bool) -> None:
    name = f"test.limits.{uuid.uuid4().hex[:10]}"
    topic = Topic(name, 1, 4 * MiB)
    ensure_topics(settings.kafka_bootstrap, [topic])
    producer = Producer(settings.kafka_bootstrap, "test-limits")
    largest = os.urandom(topic.max_message_bytes - RECORD_FRAMING_BYTES)
    try:
        from services.adapters import kafka

        kafka._LIMITS[name] = topic.max_message_bytes  # as the platform's topics are registered
        send = (lambda ms: producer.send_all(ms)) if transactional else (lambda ms: producer.send(ms[0]))
        send([Message(name, largest), Message(name, b"second")] if transactional else [Message(name, largest)])
        with pytest.raises(MessageTooLarge) as refused:
            send([Message(name, b"first"), Message(name, largest + b"x")] if transactional
                 else [Message(name, largest + b"x")])
        assert str(topic.max_message_bytes - RECORD_FRAMING_BYTES) in str(refused.value)
        # The broker itself refuses a record over the topic's limit: also permanent, not a broker outage.
        kafka._LIMITS.pop(name)
        with pytest.raises(MessageTooLarge):
            send([Message(name, b"first"), Message(name, os.urandom(5 * MiB))] if transactional
                 else [Message(name, os.urandom(5 * MiB))])
    finally:
        producer.close()
    values = read_all(settings, name, 2 if transactional else 1, timeout_s=10)
    assert values == ([largest, b"second"] if transactional else [largest])  # nothing of the refused sends

"""The Kafka adapter: one producer, one consumer loop, topic setup (DESIGN §3).

Producers use ``acks="all"`` with idempotence and bounded retries, and callers
get success only after the broker acknowledged. A broker that cannot be reached
surfaces as ``BrokerUnavailable``, which the HTTP layer turns into 503.
Consumers commit offsets only after the handler's own database commit.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.contracts.topics import ALL_TOPICS, Topic

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 15.0


class BrokerUnavailable(Exception):
    """Kafka did not acknowledge in time; nothing may be reported as durable."""


@dataclass(frozen=True)
class Message:
    topic: str
    value: bytes
    key: bytes | None = None


class Producer:
    """A lazily connected, thread-safe ``acks=all`` idempotent producer."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def _get(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = KafkaProducer(
                        bootstrap_servers=self.bootstrap,
                        client_id=self.client_id,
                        acks="all",
                        enable_idempotence=True,
                        retries=5,
                        linger_ms=2,
                        batch_size=256 * 1024,
                        max_request_size=8 * 1024 * 1024,
                        compression_type=None,
                        max_block_ms=5000,
                        bootstrap_timeout_ms=5000,  # a dead broker is a 503 in seconds, not half a minute
                        request_timeout_ms=5000,
                        delivery_timeout_ms=12000,
                        reconnect_backoff_max_ms=1000,
                    )
                except KafkaError as exc:
                    raise BrokerUnavailable(f"kafka unreachable: {exc}") from exc
            return self._producer

    def send_all(self, messages: Sequence[Message], timeout_s: float = SEND_TIMEOUT_S) -> None:
        """Send every message and return only when the broker has acknowledged all."""
        producer = self._get()
        try:
            futures = [producer.send(m.topic, value=m.value, key=m.key) for m in messages]
            producer.flush(timeout=timeout_s)
            for future in futures:
                future.get(timeout=timeout_s)
        except KafkaError as exc:
            raise BrokerUnavailable(f"kafka did not acknowledge: {exc}") from exc

    def send(self, message: Message, timeout_s: float = SEND_TIMEOUT_S) -> None:
        self.send_all([message], timeout_s)

    def send_stream(self, batches: Iterable[Sequence[Message]], timeout_s: float = SEND_TIMEOUT_S) -> int:
        """Send batches as ``batches`` yields them, then return only when the broker acknowledged all.

        Producing overlaps the caller's preparation of the next batch (the
        iterable is consumed lazily); the count of messages is returned.
        """
        producer = self._get()
        futures = []
        try:
            for batch in batches:
                futures.extend(producer.send(m.topic, value=m.value, key=m.key) for m in batch)
            producer.flush(timeout=timeout_s)
            for future in futures:
                future.get(timeout=timeout_s)
        except KafkaError as exc:
            raise BrokerUnavailable(f"kafka did not acknowledge: {exc}") from exc
        return len(futures)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None


Handler = Callable[[list], None]


class ConsumerLoop:
    """Polls a topic in a thread; the handler commits to its DB, then we commit offsets.

    The handler receives a batch of kafka ``ConsumerRecord`` and must be
    idempotent: after a crash between its DB commit and the offset commit the
    same records arrive again.
    """

    def __init__(
        self, *, bootstrap: str, topic: Topic, group_id: str, handler: Handler, max_records: int = 500,
        gather_ms: int = 0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.group_id = group_id
        self.handler = handler
        self.max_records = max_records
        # A handler whose cost is mostly per batch (one database transaction) lets records gather:
        # after a batch that did not fill ``max_records`` the loop waits ``gather_ms`` before it polls
        # again. An idle topic costs nothing more (the poll itself waits on the broker).
        self.gather_ms = gather_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"consume-{topic.name}", daemon=True)
        self.healthy = False
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _connect(self) -> KafkaConsumer:
        consumer = KafkaConsumer(
            self.topic.name,
            bootstrap_servers=self.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.max_records,
            fetch_max_bytes=32 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            reconnect_backoff_max_ms=1000,
        )
        return consumer

    def _run(self) -> None:
        consumer: KafkaConsumer | None = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._connect()
                batches = consumer.poll(timeout_ms=500)
                self.healthy = True
                records = [r for part in batches.values() for r in part]
                if records:
                    self.handler(records)
                    consumer.commit()
                    if self.gather_ms and len(records) < self.max_records:
                        self._stop.wait(self.gather_ms / 1000)
            except Exception as exc:  # keep consuming: the broker may come back
                self.healthy = False
                self.last_error = repr(exc)
                log.warning("consumer %s: %r", self.topic.name, exc)
                if consumer is not None:
                    # Rewind to the last committed offsets: uncommitted work is redone.
                    try:
                        consumer.close(autocommit=False)
                    except Exception as close_exc:
                        log.debug("consumer close failed: %r", close_exc)
                    consumer = None
                self._stop.wait(1.0)
        if consumer is not None:
            consumer.close(autocommit=False)


def ensure_topics(bootstrap: str, topics: Iterable[Topic] = ALL_TOPICS) -> None:
    """Create the platform's topics with their partition counts (idempotent)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="healthgov-admin")
    try:
        existing = set(admin.list_topics())
        wanted = {
            t.name: {"num_partitions": t.partitions, "replication_factor": 1}
            for t in topics
            if t.name not in existing
        }
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted, timeout_ms=30000, wait_for_metadata=True)
    finally:
        admin.close()

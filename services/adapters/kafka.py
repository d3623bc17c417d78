"""The Kafka adapter: one producer, one consumer loop, topic setup (docs/architecture.md §3).

Producers use ``acks="all"`` with idempotence and bounded retries, and callers
get success only after the broker acknowledged. A broker that cannot be reached
surfaces as ``BrokerUnavailable``, which the HTTP layer turns into 503.
Consumers commit offsets only after the handler's own database commit.

Several messages sent together (a hospital's submission and its ingest audit
event, a consent change and its audit event) go in one Kafka transaction:
consumers read committed data only, so a broker lost half-way, or a caller that
fails while streaming, leaves none of them visible rather than some.

The producer runs on librdkafka (confluent-kafka); consumers and topic
administration on kafka-python. Every read publishes one AuditEvent and waits
for its acknowledgement before answering, so the producer's cost per message
is on the platform's hottest path: measured on this project's broker, a
kafka-python send-and-wait cost 0.84 ms of the caller's CPU, 0.51 ms of the
broker's and 1.1 ms of wall time; librdkafka's 0.09 ms, 0.19 ms and 0.26 ms
(it writes tighter requests in C and keeps its I/O off the GIL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import confluent_kafka
from kafka import KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from services.adapters import telemetry
from services.contracts import errors
from services.contracts.topics import ALL_TOPICS, LARGEST_MESSAGE_BYTES, MiB, Topic

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10.0
# librdkafka gives up on a message (and reports it failed) after this long; callers wait a little longer, so a
# message they were told failed is never delivered afterwards. A dead broker is a 503 in seconds.
DELIVERY_TIMEOUT_MS = 8_000
# A transaction the broker has not seen committed within this long is aborted by the broker. It bounds how long
# consumers wait behind the open transaction of a process that died mid-send; it must exceed the longest
# synchronous submission (a 128 MB NDJSON body takes well under a minute).
# Since transactional ids are stable per service instance (``instance_id``), a restarted process fences its
# predecessor's open transactions at start, so this timeout matters only when a process dies and is not restarted.
TRANSACTION_TIMEOUT_MS = 60_000
ABORT_TIMEOUT_S = 3.0
# Consumer group membership: a member that stops heartbeating is replaced after SESSION_TIMEOUT_MS (kafka-python's
# default was 45 s of stalled partitions); with static membership a restarted member takes its partitions back
# at once, without waiting for that timeout at all.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 3_000
LAG_INTERVAL_S = 1.0  # how often a consumer loop updates its lag gauge
TRANSACTIONAL_SLOTS = 8  # concurrent multi-message sends per process; more wait for a free slot
# Room for the record batch's framing around one record: a record must be this much below its topic's limit.
RECORD_FRAMING_BYTES = 64 * 1024
_LIMITS = {t.name: t.max_message_bytes for t in ALL_TOPICS}


def instance_id() -> str | None:
    """This process's name among the replicas of its service (``HEALTHGOV_INSTANCE``; the stack sets ``0``).

    It makes transactional ids and consumer group memberships stable across
    restarts, which is what lets a restarted process take over at once: its
    producers fence the predecessor's open transactions, its consumers take
    back the predecessor's partitions. Two live replicas of one service must
    therefore run with different instance names. Unset (a service built
    in-process by a test or a tool), ids are unique to the process, as they
    must be beside a running service of the same name.
    """
    return os.environ.get("HEALTHGOV_INSTANCE") or None


class BrokerUnavailable(errors.Unavailable):
    """Kafka did not acknowledge in time; nothing may be reported as durable.

    The caller is told only that the broker is unavailable (503, Retry-After);
    ``str()`` keeps the driver's detail for the service's log.
    """

    def __init__(self, detail: str) -> None:
        super().__init__("event broker unavailable, try again shortly")
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class MessageTooLarge(errors.TooLarge):
    """A message larger than its topic accepts: permanent, retrying cannot help (never a 503).

    Raised before anything is sent when the size is known to exceed the
    topic's limit, and when the broker refuses a record as too large; in a
    transaction nothing of the send becomes visible.
    """

    def __init__(self, topic: str | None, size: int | None, limit: int | None) -> None:
        what = f"a message of {size} bytes" if size else "a message"
        within = f"; the limit is {limit} bytes" if limit else ""
        super().__init__(f"{what} is too large for {topic or 'its topic'}{within}")
        self.topic, self.size, self.limit = topic, size, limit


def check_size(message: Message) -> None:
    """Refuse a message its topic would refuse, before it is sent (``MessageTooLarge``)."""
    limit = _LIMITS.get(message.topic)
    size = len(message.value) + len(message.key or b"")
    if limit is not None and size > limit - RECORD_FRAMING_BYTES:
        raise MessageTooLarge(message.topic, size, limit - RECORD_FRAMING_BYTES)


def _too_large(err: confluent_kafka.KafkaError | None) -> bool:
    return err is not None and err.code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE


@dataclass(frozen=True)
class Message:
    topic: str
    value: bytes
    key: bytes | None = None


class _Acks:
    """The delivery reports of one call's messages: done when every one has come back."""

    def __init__(self) -> None:
        self.pending = 0
        self.errors: list[str] = []
        self.fatal = False
        self.too_large: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self.done = threading.Event()
        self.done.set()  # nothing sent yet, nothing to wait for

    def report(self, err: confluent_kafka.KafkaError | None, msg: Any) -> None:
        with self._lock:
            if err is not None:
                self.errors.append(str(err))
                self.fatal = self.fatal or err.fatal()
                if _too_large(err) and msg is not None:
                    self.too_large = (msg.topic(), len(msg.value() or b""))
            self.pending -= 1
            if self.pending == 0:
                self.done.set()

    def add(self, more: int) -> None:
        with self._lock:
            self.pending += more
            if self.pending:
                self.done.clear()


class Producer:
    """A lazily connected, thread-safe ``acks=all`` idempotent producer.

    Single messages (every read's audit event) go through one librdkafka
    producer whose delivery reports a background thread serves; each call
    waits for its own message only, so concurrent readers never wait for each
    other's events. Several messages sent together go through a small pool of
    transactional producers, one transaction per call.
    """

    def __init__(self, bootstrap: str, client_id: str, instance: str | None = None) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self._producer: confluent_kafka.Producer | None = None
        self._poller: tuple[threading.Thread, threading.Event] | None = None
        self._lock = threading.Lock()
        # Transactional producers, one per slot, made on first use and reused. A service passes its
        # ``instance``: the ids are then the same after a restart, so registering them (``fence_predecessors``)
        # aborts whatever transaction the dead predecessor left open, instead of leaving every consumer behind
        # it until the broker's transaction timeout. Without an instance (tools, tests) the ids are unique to
        # this object: two live producers sharing an id would fence each other.
        self._transactional_prefix = (f"{client_id}-{instance}" if instance is not None
                                      else f"{client_id}-{uuid.uuid4().hex[:12]}")
        self._slots = threading.BoundedSemaphore(TRANSACTIONAL_SLOTS)
        self._idle: list[tuple[int, confluent_kafka.Producer]] = []
        self._unmade = list(range(TRANSACTIONAL_SLOTS))

    def _config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 0,  # a read waits for its one event: never hold it back for company
            # The largest record any topic accepts, plus the request's own framing (librdkafka refuses larger).
            "message.max.bytes": LARGEST_MESSAGE_BYTES + MiB,
            "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            "request.timeout.ms": 5000,
            "socket.connection.setup.timeout.ms": 5000,
            "reconnect.backoff.max.ms": 1000,
            "logger": log,
        }

    def _get(self) -> confluent_kafka.Producer:
        with self._lock:
            if self._producer is None:
                try:
                    self._producer = confluent_kafka.Producer(self._config())
                except confluent_kafka.KafkaException as exc:
                    raise BrokerUnavailable(f"kafka producer could not start: {exc}") from exc
                stop = threading.Event()
                thread = threading.Thread(target=self._serve, args=(self._producer, stop),
                                          name=f"kafka-acks-{self.client_id}", daemon=True)
                thread.start()
                self._poller = (thread, stop)
            return self._producer

    @staticmethod
    def _serve(producer: confluent_kafka.Producer, stop: threading.Event) -> None:
        """Run delivery reports (and librdkafka's log lines) as they arrive."""
        while not stop.is_set():
            producer.poll(0.1)

    @staticmethod
    def _produce(producer: confluent_kafka.Producer, m: Message, deadline: float,
                 on_delivery: Callable[..., None] | None = None) -> None:
        """Queue one message; a full local queue is drained by serving deliveries until ``deadline``."""
        check_size(m)
        extra: dict[str, Any] = {}
        if on_delivery is not None:
            extra["on_delivery"] = on_delivery
        headers = telemetry.trace_headers()  # the sender's trace continues in whoever consumes the message
        if headers is not None:
            extra["headers"] = headers
        while True:
            try:
                producer.produce(m.topic, value=m.value, key=m.key, **extra)
                return
            except confluent_kafka.KafkaException as exc:
                if _too_large(exc.args[0] if exc.args else None):
                    raise MessageTooLarge(m.topic, len(m.value), None) from exc
                raise
            except BufferError:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable("kafka producer queue full") from None
                producer.poll(0.005)

    def _wait(self, acks: _Acks, deadline: float) -> None:
        if not acks.done.wait(max(0.0, deadline - time.monotonic())):
            raise BrokerUnavailable(f"kafka did not acknowledge {acks.pending} message(s) in time")
        if acks.too_large is not None:
            raise MessageTooLarge(acks.too_large[0], acks.too_large[1], _LIMITS.get(acks.too_large[0]))
        if acks.errors:
            if acks.fatal:  # an idempotent producer that hit a fatal error must be replaced
                self.close()
            raise BrokerUnavailable(f"kafka did not acknowledge: {acks.errors[0]}")

    def send(self, message: Message, timeout_s: float = SEND_TIMEOUT_S) -> None:
        """Send one message; return only when the broker acknowledged it (one message needs no transaction)."""
        producer = self._get()
        acks = _Acks()
        acks.add(1)
        start = time.monotonic()
        deadline = start + timeout_s
        try:
            try:
                self._produce(producer, message, deadline, acks.report)
            except confluent_kafka.KafkaException as exc:
                raise BrokerUnavailable(f"kafka refused the message: {exc}") from exc
            self._wait(acks, deadline)
        except errors.HealthgovError:
            telemetry.KAFKA_SEND_FAILURES.labels("single").inc()
            raise
        telemetry.KAFKA_SEND_LATENCY.labels("single").observe(time.monotonic() - start)
        telemetry.KAFKA_PRODUCED.labels(message.topic).inc()

    def send_all(self, messages: Sequence[Message], timeout_s: float = SEND_TIMEOUT_S) -> None:
        """Send every message atomically; return only when the broker has committed all of them."""
        if len(messages) == 1:
            self.send(messages[0], timeout_s)
        elif messages:
            self.send_stream([messages], timeout_s)

    def send_stream(self, batches: Iterable[Sequence[Message]], timeout_s: float = SEND_TIMEOUT_S) -> int:
        """Send batches as ``batches`` yields them in one transaction; return once it is committed.

        Producing overlaps the caller's preparation of the next batch (the
        iterable is consumed lazily). If the broker fails, or the iterable
        raises, the transaction is aborted: consumers see none of the messages.
        The count of messages is returned.
        """
        start = time.monotonic()
        slot, producer = self._acquire(timeout_s)
        reusable = False
        topics: dict[str, int] = {}
        try:
            producer.begin_transaction()
            count = 0
            for batch in batches:
                deadline = time.monotonic() + timeout_s  # the wait is for the broker, not for the caller's batches
                for m in batch:
                    self._produce(producer, m, deadline)
                    topics[m.topic] = topics.get(m.topic, 0) + 1
                count += len(batch)
                producer.poll(0)  # serve delivery reports and log lines as the stream goes
            producer.commit_transaction(timeout_s)
            reusable = True
            telemetry.KAFKA_SEND_LATENCY.labels("transaction").observe(time.monotonic() - start)
            for topic, n in topics.items():
                telemetry.KAFKA_PRODUCED.labels(topic).inc(n)
            return count
        except confluent_kafka.KafkaException as exc:
            telemetry.KAFKA_SEND_FAILURES.labels("transaction").inc()
            reusable = self._abort(producer, exc)
            if _too_large(exc.args[0] if exc.args else None):
                raise MessageTooLarge(None, None, None) from exc
            raise BrokerUnavailable(f"kafka did not commit the transaction: {exc}") from exc
        except BaseException:
            reusable = self._abort(producer, None)
            raise
        finally:
            self._release(slot, producer, reusable)

    def _acquire(self, timeout_s: float) -> tuple[int, confluent_kafka.Producer]:
        """A transactional producer of a free slot: an idle one, else a new one registered with the broker."""
        if not self._slots.acquire(timeout=timeout_s):
            raise BrokerUnavailable("every transactional producer stayed busy")
        with self._lock:
            if self._idle:
                return self._idle.pop()
            slot = self._unmade.pop()
        config = {**self._config(), "transactional.id": f"{self._transactional_prefix}-{slot}",
                  "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS}
        try:
            producer = confluent_kafka.Producer(config)
            producer.init_transactions(timeout_s)
        except (confluent_kafka.KafkaException, BufferError) as exc:
            self._release(slot, None, False)
            raise BrokerUnavailable(f"kafka transactional producer could not start: {exc}") from exc
        return slot, producer

    def fence_predecessors(self, timeout_s: float = SEND_TIMEOUT_S) -> int:
        """Register every slot's transactional id now; return how many were registered.

        ``init_transactions`` on an id aborts the open transaction of the
        previous producer with that id (a process killed mid-send), so
        consumers reading committed data go on at once. Run at start, off the
        request path; a broker that is down is only logged (the slots are
        registered on first use then).
        """
        made: list[tuple[int, confluent_kafka.Producer]] = []
        try:
            while True:
                with self._lock:
                    if not self._unmade:
                        break
                try:
                    made.append(self._acquire(timeout_s))
                except BrokerUnavailable as exc:
                    log.warning("kafka: transactional ids not registered at start: %s", exc)
                    break
        finally:
            for slot, producer in made:
                self._release(slot, producer, True)
        return len(made)

    def _release(self, slot: int, producer: confluent_kafka.Producer | None, reusable: bool) -> None:
        with self._lock:
            if reusable and producer is not None:
                self._idle.append((slot, producer))
            else:
                self._unmade.append(slot)  # the next user makes a new producer, which fences this one's id
        self._slots.release()

    @staticmethod
    def _abort(producer: confluent_kafka.Producer, cause: confluent_kafka.KafkaException | None) -> bool:
        """Abort the open transaction at once, so consumers are not held behind it until it times out.

        Returns whether the producer may be used again: only after a failure of
        the caller's own (the broker saw nothing wrong). After a broker-side
        failure librdkafka's idempotence state can still need an epoch bump (the
        next transaction then fails with OUT_OF_ORDER_SEQUENCE_NUMBER), so the
        producer is replaced; the new one registers the same transactional id,
        which fences the old one.
        """
        try:
            producer.abort_transaction(ABORT_TIMEOUT_S)
        except confluent_kafka.KafkaException as exc:
            log.warning("kafka transaction abort failed: %s", exc)
            return False
        return cause is None

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
            poller, self._poller = self._poller, None
            idle, self._idle = self._idle, []
            self._unmade.extend(slot for slot, _ in idle)
        if producer is not None:
            producer.flush(5)
        for _, transactional in idle:
            transactional.flush(1)
        if poller is not None:
            thread, stop = poller
            stop.set()
            if thread is not threading.current_thread():
                thread.join(timeout=5)


Handler = Callable[[list], None]


class ConsumerLoop:
    """Polls a topic in a thread; the handler commits to its DB, then we commit offsets.

    The handler receives a batch of kafka ``ConsumerRecord`` and must be
    idempotent: after a crash between its DB commit and the offset commit the
    same records arrive again.
    """

    def __init__(
        self, *, bootstrap: str, topic: Topic, group_id: str, handler: Handler, max_records: int = 500,
        gather_ms: int = 0, instance: str | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        # A service passes its ``instance``: the consumer is then a static member of its group, and a restart
        # takes the predecessor's partitions back at once instead of after a session timeout and a rebalance.
        self.instance = instance
        self.topic = topic
        self.group_id = group_id
        self.handler = handler
        self.max_records = max_records
        # A handler whose cost is mostly per batch (one database transaction) lets records gather for up
        # to ``gather_ms``. The gathering happens in the broker: a fetch is answered when 1 MiB is there or
        # ``gather_ms`` has passed, so a topic that receives one small event per read costs one fetch per
        # interval, not one per event (the client fetches ahead in the background while the handler runs).
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
            fetch_max_bytes=max(32 * MiB, self.topic.max_message_bytes),
            # A fetch can always carry the largest record the topic accepts.
            max_partition_fetch_bytes=self.topic.max_message_bytes,
            reconnect_backoff_max_ms=1000,
            isolation_level="read_committed",  # an aborted submission is never seen
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            **self._membership(),
            **({"fetch_min_bytes": 1024 * 1024, "fetch_max_wait_ms": self.gather_ms} if self.gather_ms else {}),
        )
        return consumer

    def _membership(self) -> dict[str, Any]:
        if self.instance is None or "group_instance_id" not in KafkaConsumer.DEFAULT_CONFIG:
            return {}
        return {"group_instance_id": f"{self.group_id}-{self.topic.name}-{self.instance}"}

    def _run(self) -> None:
        consumer: KafkaConsumer | None = None
        up = telemetry.KAFKA_CONSUMER_UP.labels(self.topic.name, self.group_id)
        lag_due = 0.0
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._connect()
                batches = consumer.poll(timeout_ms=500)
                self.healthy = True
                up.set(1)
                records = [r for part in batches.values() for r in part]
                if records:
                    with telemetry.consumed(self.topic.name, self.group_id, records):
                        self.handler(records)
                    consumer.commit()
                if time.monotonic() >= lag_due:  # from the last fetch's high watermarks: no round trip
                    telemetry.record_lag(self.topic.name, self.group_id, consumer)
                    lag_due = time.monotonic() + LAG_INTERVAL_S
            except Exception as exc:  # keep consuming: the broker may come back
                self.healthy = False
                up.set(0)
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


def replication_for(brokers: int) -> tuple[int, int]:
    """The replication factor and ``min.insync.replicas`` of the platform's topics on ``brokers`` brokers.

    Three copies, two of which must have a message before it is acknowledged
    (producers send with ``acks=all``): one broker may die, or be restarted,
    without losing an acknowledged message and without refusing writes. A
    smaller cluster keeps what it can: one broker (the local default) has one
    copy, two brokers two copies of which one suffices.
    """
    replicas = max(1, min(3, brokers))
    return replicas, 2 if replicas >= 3 else 1


def ensure_topics(bootstrap: str, topics: Iterable[Topic] = ALL_TOPICS, brokers: int = 1) -> None:
    """Create the platform's topics with their partition counts, size limits and replication (idempotent).

    Topics that exist already (a state directory from an older version) get
    their settings again, so the limits in ``services/contracts/topics.py``
    hold whatever the topic was created with. ``brokers`` is the cluster's
    size: its topics are replicated as ``replication_for`` says.
    """
    replicas, min_insync = replication_for(brokers)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="healthgov-admin")
    try:
        topics = list(topics)
        configs = {t.name: {**t.configs, "min.insync.replicas": str(min_insync)} for t in topics}
        existing = set(admin.list_topics())
        wanted = {
            t.name: {"num_partitions": t.partitions, "replication_factor": replicas, "configs": configs[t.name]}
            for t in topics
            if t.name not in existing
        }
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted, timeout_ms=30000, wait_for_metadata=True)
        older = [ConfigResource(ConfigResourceType.TOPIC, t.name, configs=configs[t.name])
                 for t in topics if t.name in existing]
        if older:
            admin.alter_configs(older)
    finally:
        admin.close()

"""Sustained audit append: events/s consumed from Kafka and committed, checkpoints on.

    .venv/bin/python bench/audit_append.py [--n 200000] [--store postgresql|sqlite] [--interval 1]

Needs the platform's Kafka and PostgreSQL (``healthgov stack up``; ``HEALTHGOV_DATABASE_URL``).
It never touches the platform's log: it creates its own topic (1 partition, as
``audit.events.v1``) and its own database, and drops both afterwards.

1. produce N realistic events (~800 bytes) with the platform producer (acks=all);
2. raw Kafka ceiling: a bare consumer with the audit consumer's settings reads the topic, no processing;
3. raw database ceiling: the same N entry rows inserted into a copy of the entry table (same columns
   and indexes, no triggers, no Merkle nodes) the way the log inserts (PostgreSQL: binary COPY; SQLite:
   executemany), in the consumer's batch size, one commit each;
4. the audit pipeline: ``ConsumerLoop`` + ``AuditHandler`` (validate, canonicalise, dead-letter,
   append entries and subtree nodes, commit, then commit offsets) with the checkpointer signing every
   ``--interval`` seconds in its own thread, each checkpoint re-derived from the entries. The rate is N
   over the time from the first batch to the last committed offset.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from audit_common import events, produce, raw_kafka, scratch_database, table
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from sqlalchemy import MetaData, Table, insert, text

from services.adapters.config import PlatformSettings
from services.adapters.kafka import ConsumerLoop, Producer, ensure_topics
from services.audit import store
from services.audit.checkpoints import Checkpointer, CheckpointStore
from services.audit.consumer import AuditHandler
from services.audit.log import MerkleLog, entry_fields
from services.audit.signing import LogSigner
from services.contracts.topics import Topic

BATCH = 2000  # the audit consumer's max_poll_records
_PG_TYPES = {"idx": "int8", "body": "bytea"}



def raw_db(url: str, bodies: list[bytes]) -> float:
    engine = store.connect(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("CREATE TABLE bench_raw (LIKE audit_entry INCLUDING ALL)"))
        else:  # the same table and indexes, under another name, without the triggers
            ddls = conn.execute(text("SELECT sql FROM sqlite_master WHERE tbl_name = 'audit_entry' "
                                     "AND type IN ('table', 'index') AND sql IS NOT NULL ORDER BY type DESC")).all()
            for (ddl,) in ddls:
                conn.execute(text(ddl.replace("audit_entry", "bench_raw")))
    raw = Table("bench_raw", MetaData(), autoload_with=engine)
    rows = [{"idx": i, "body": b, **entry_fields(b)} for i, b in enumerate(bodies)]  # prepared outside the clock
    cols = list(rows[0])
    started = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":  # the log's own bulk path: binary COPY
                cur = conn.connection.driver_connection.cursor()
                with cur.copy(f"COPY bench_raw ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types([_PG_TYPES.get(c, "varchar") for c in cols])
                    for row in rows[i:i + BATCH]:
                        cp.write_row([row[c] for c in cols])
            else:
                conn.execute(insert(raw), rows[i:i + BATCH])
    elapsed = time.perf_counter() - started
    engine.dispose()
    return len(rows) / elapsed


class Clocked:
    """Wraps the handler to note when the first batch arrived."""

    def __init__(self, inner: AuditHandler) -> None:
        self.inner, self.first, self.busy, self.batches = inner, 0.0, 0.0, 0

    def __call__(self, records: list[Any]) -> None:
        started = time.perf_counter()
        if not self.first:
            self.first = started
        self.inner(records)
        self.busy += time.perf_counter() - started
        self.batches += 1


def pipeline(url: str, bootstrap: str, topic: Topic, n: int, interval: float) -> dict[str, float]:
    engine = store.connect(url)
    log = MerkleLog(engine)
    cps = CheckpointStore(engine)
    signer = LogSigner("bench.healthgov.example/audit", os.urandom(32))
    checkpointer = Checkpointer(log, cps, signer)
    producer = Producer(bootstrap, "audit-bench-dl")
    handler = Clocked(AuditHandler(log, producer))
    group = f"audit-bench-{uuid.uuid4().hex[:8]}"
    loop = ConsumerLoop(bootstrap=bootstrap, topic=topic, group_id=group, handler=handler, max_records=BATCH)
    stop = threading.Event()
    signed: list[int] = []

    def checkpoints() -> None:
        while not stop.wait(interval):
            cp = checkpointer.checkpoint()
            if cp is not None and (not signed or signed[-1] != cp.size):
                signed.append(cp.size)

    ticker = threading.Thread(target=checkpoints, daemon=True)
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    tp = TopicPartition(topic.name, 0)
    loop.start()
    ticker.start()
    while (probe.committed(tp) or 0) < n:
        time.sleep(0.05)
    done = time.perf_counter()
    stop.set()
    loop.stop()
    ticker.join()
    probe.close()
    final = checkpointer.checkpoint()
    assert final is not None and final.size == n and log.size() == n, "the log lost or duplicated events"
    producer.close()
    engine.dispose()
    return {"rate": n / (done - handler.first), "seconds": done - handler.first, "checkpoints": len(signed),
            "handler_share": handler.busy / (done - handler.first), "batch": n / max(1, handler.batches)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between checkpoints")
    args = ap.parse_args()
    settings = PlatformSettings()
    bootstrap = settings.kafka_bootstrap
    topic = Topic(f"bench.audit.events.{uuid.uuid4().hex[:8]}", 1)
    ensure_topics(bootstrap, [topic])
    bodies = events(args.n)
    try:
        print(f"{args.n} events of {sum(map(len, bodies)) // args.n} bytes; store {args.store}; "
              f"checkpoint every {args.interval:g}s", flush=True)
        produced = produce(bootstrap, topic, bodies, "audit-bench")
        kafka_ceiling = raw_kafka(bootstrap, topic, args.n, BATCH)
        with tempfile.TemporaryDirectory() as tmp, scratch_database(args.store, Path(tmp)) as url:
            store.migrate(url)
            db_ceiling = raw_db(url, bodies)
        with tempfile.TemporaryDirectory() as tmp, scratch_database(args.store, Path(tmp)) as url:
            store.migrate(url)
            result = pipeline(url, bootstrap, topic, args.n, args.interval)
    finally:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.delete_topics([topic.name])
        admin.close()
    print(table([
        ("produce (acks=all, platform producer)", f"{produced:,.0f}", "events/s"),
        ("raw Kafka consume (no processing)", f"{kafka_ceiling:,.0f}", "events/s"),
        (f"raw {args.store} insert of the entry rows", f"{db_ceiling:,.0f}", "rows/s"),
        ("audit append from Kafka, committed, checkpoints on", f"{result['rate']:,.0f}", "events/s"),
    ], ("what", "rate", "unit")))
    print(f"pipeline: {result['seconds']:.1f}s, {result['checkpoints']:.0f} checkpoints signed while appending; "
          f"{result['handler_share']:.0%} of the time in the handler (validate, canonicalise, append, commit), "
          f"{result['batch']:.0f} events per batch")


if __name__ == "__main__":
    main()

"""What the audit benchmarks share: realistic events, scratch databases, percentiles, tables."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.adapters.config import PlatformSettings
from services.adapters.kafka import Message, Producer
from services.contracts.events import Accessor, AuditDecision, AuditEvent, ResourceRef
from services.contracts.topics import Topic
from services.tlog.canonical import canonical_json

_PLACEHOLDER_ID = "00000000-0000-7000-8000-000000000000"
_PLACEHOLDER_PATIENT = "p-" + "f" * 32


def _template(kind: str) -> bytes:
    ev = AuditEvent(
        event_id=_PLACEHOLDER_ID, kind=kind, purpose="TREAT", patient=_PLACEHOLDER_PATIENT,
        accessor=Accessor(id="dr-wang", org="gy-hosp-001", org_type="hospital", role="clinician"),
        resources=[ResourceRef(type="Condition", id=str(uuid.uuid4()), version="1") for _ in range(3)],
        decision=AuditDecision(allow=kind != "denial", reasons=["clinician_care_relationship"],
                               obligations={"deidentify": "none", "redact_labels": ["HIV"], "notify_patient": False,
                                            "notify_after": None, "review": False},
                               policy_version="2026.11.1+0123456789ab"),
        request_id=str(uuid.uuid4()), data_digest="ab" * 32)
    return canonical_json(ev.model_dump(mode="json", by_alias=True))


TEMPLATES = [_template("disclosure")] * 6 + [_template("denial"), _template("break_glass")]


def events(n: int, seed: int = 7) -> list[bytes]:
    """``n`` canonical AuditEvents (~800 bytes, as records publishes them), unique ids, 5,000 patients.

    Substituting same-length strings into a canonical template keeps it canonical.
    """
    rnd = random.Random(seed)
    patients = ["p-" + uuid.UUID(int=rnd.getrandbits(128)).hex for _ in range(5000)]
    out = []
    for _ in range(n):
        body = rnd.choice(TEMPLATES).replace(_PLACEHOLDER_ID.encode(), str(uuid.UUID(int=rnd.getrandbits(128),
                                                                                     version=4)).encode())
        out.append(body.replace(_PLACEHOLDER_PATIENT.encode(), rnd.choice(patients).encode()))
    return out


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


@contextmanager
def scratch_database(kind: str, workdir: Path, keep: bool = False) -> Iterator[str]:
    """A fresh database URL (the owner's): a SQLite file, or a new database in the platform's PostgreSQL."""
    if kind == "sqlite":
        path = workdir / f"audit-bench-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            if not keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    owner = PlatformSettings().database_url
    if not owner or not owner.startswith("postgresql"):
        raise SystemExit("HEALTHGOV_DATABASE_URL must name the PostgreSQL server (deploy/postgres.sh start)")
    name = f"hg_audit_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(owner, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(owner).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([line.format(*header), line.format(*("-" * w for w in widths)),
                      *(line.format(*r) for r in rows)])


def produce(bootstrap: str, topic: Topic, bodies: list[bytes], client: str) -> float:
    """Publish ``bodies`` as the platform does (acks=all, idempotent); messages/s."""
    producer = Producer(bootstrap, client)
    started = time.perf_counter()
    for i in range(0, len(bodies), 10_000):
        producer.send_all([Message(topic.name, b) for b in bodies[i:i + 10_000]])
    elapsed = time.perf_counter() - started
    producer.close()
    return len(bodies) / elapsed


def raw_kafka(bootstrap: str, topic: Topic, n: int, batch: int) -> float:
    """The ceiling under a consumer: ``n`` records of partition 0 fetched and nothing else done; records/s."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=batch,
                      fetch_max_bytes=32 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024)
    tp = TopicPartition(topic.name, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    seen, started = 0, time.perf_counter()
    while seen < n:
        seen += sum(len(v) for v in c.poll(timeout_ms=1000).values())
    elapsed = time.perf_counter() - started
    c.close()
    return n / elapsed

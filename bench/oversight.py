"""Oversight: metric updates per second from the audit topic, beside the raw ceiling, and API p95 at scale.

    .venv/bin/python bench/oversight.py [--n 1000000] [--accessors 2000] [--hospitals 130]

Needs the platform's Kafka, OPA and PostgreSQL (``healthgov stack up``; ``HEALTHGOV_DATABASE_URL``).
It never touches the platform's own data: its own topic (1 partition, as ``audit.events.v1``) and
its own database, both dropped afterwards.

1. produce N realistic audit events (reads, denials, break-glass; ~750 bytes, canonical JSON) spread
   over 30 days, from ``--accessors`` clinicians of ``--hospitals`` hospitals, 5,000 patients;
2. raw Kafka ceiling: a bare consumer reads the topic, no processing;
3. the oversight pipeline: ``ConsumerLoop`` + the oversight ``AuditHandler`` (projection row, access
   counters, review queue, and the rules for every accessor a batch touched), committed per batch;
   the rate is N over the time from the first batch to the last committed offset; CPU per event of
   this process (the consumer) and of PostgreSQL;
4. the API at N events: p50 / p95 of the hospitals table, a hospital page, the anomalies, the review
   queue and the audit search (first page, a deep page, filtered by accessor and by patient).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from audit_common import percentile, produce, raw_kafka, scratch_database, table
from cpu import ComponentClock
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from services.adapters.auth import issue_token
from services.adapters.config import PlatformSettings
from services.adapters.kafka import ConsumerLoop, Producer, ensure_topics
from services.adapters.keys import PlatformKeys
from services.contracts.events import Accessor, AuditDecision, AuditEvent, ResourceRef
from services.contracts.topics import Topic
from services.oversight.consumer import AuditHandler
from services.oversight.rules import Thresholds
from services.oversight.store import make_engine

BATCH = 2000  # the oversight consumer's max_poll_records
_ID = "00000000-0000-7000-8000-000000000000"
_AT = "2026-01-01T00:00:00.000000Z"
_WHO = "dr-00000"
_ORG = "gy-hosp-000"
_PATIENT = "p-" + "f" * 32


def _template(kind: str) -> bytes:
    ev = AuditEvent(event_id=_ID, occurred_at=_AT, kind=kind, purpose="ETREAT" if kind == "break_glass" else "TREAT",
                    patient=_PATIENT, accessor=Accessor(id=_WHO, org=_ORG, org_type="hospital", role="clinician"),
                    resources=[ResourceRef(type="Condition", id=str(uuid.uuid4()), version="1") for _ in range(2)],
                    decision=AuditDecision(allow=kind != "denial", reasons=["clinician_care_relationship"],
                                           policy_version="2026.12.4+433923915304"),
                    request_id=str(uuid.uuid4()), data_digest="ab" * 32,
                    details={"break_glass_reason": "unconscious"} if kind == "break_glass" else {})
    return ev.canonical()


def events(n: int, accessors: int, hospitals: int, seed: int = 7) -> list[bytes]:
    """``n`` canonical events in time order over the last 30 days (same-length substitutions keep them canonical)."""
    rnd = random.Random(seed)
    templates = [_template("disclosure")] * 90 + [_template("denial")] * 9 + [_template("break_glass")]
    patients = ["p-" + uuid.UUID(int=rnd.getrandbits(128)).hex for _ in range(5000)]
    staff = [(f"dr-{i:05d}", f"gy-hosp-{rnd.randrange(1, hospitals + 1):03d}") for i in range(accessors)]
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / n
    out = []
    for i in range(n):
        who, org = rnd.choice(staff)
        at = (start + i * step).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = rnd.choice(templates).replace(_ID.encode(), str(uuid.UUID(int=rnd.getrandbits(128), version=4)).encode())
        body = body.replace(_AT.encode(), at.encode()).replace(_WHO.encode(), who.encode())
        out.append(body.replace(_ORG.encode(), org.encode()).replace(_PATIENT.encode(), rnd.choice(patients).encode()))
    return out



class Clocked:
    def __init__(self, inner: AuditHandler) -> None:
        self.inner, self.first = inner, 0.0

    def __call__(self, records: list[Any]) -> None:
        if not self.first:
            self.first = time.perf_counter()
        self.inner(records)


def pipeline(url: str, bootstrap: str, topic: Topic, n: int) -> dict[str, float]:
    engine = make_engine(url)
    handler = Clocked(AuditHandler(engine, Producer(bootstrap, "oversight-bench-dl"), thresholds=Thresholds(),
                                   review_days=7))
    group = f"oversight-bench-{uuid.uuid4().hex[:8]}"
    loop = ConsumerLoop(bootstrap=bootstrap, topic=topic, group_id=group, handler=handler, max_records=BATCH,
                        gather_ms=50)
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    tp = TopicPartition(topic.name, 0)
    clock = ComponentClock()
    clock.start()
    cpu0 = time.process_time()
    loop.start()
    while (probe.committed(tp) or 0) < n:
        time.sleep(0.2)
    done = time.perf_counter()
    cpu = time.process_time() - cpu0
    loop.stop()
    probe.close()
    pg = clock.per_request(n, unit=1e6).get("postgres", 0.0)
    engine.dispose()
    return {"rate": n / (done - handler.first), "consumer_us": cpu / n * 1e6, "postgres_us": pg,
            "flags": handler.inner.flags_raised}


def api(url: str, n: int, rounds: int) -> list[tuple[str, ...]]:
    from fastapi.testclient import TestClient

    from services.oversight.app import create_app
    from services.oversight.config import OversightSettings

    settings = OversightSettings(oversight_database_url=url, oversight_consume=False)
    private, _ = PlatformKeys(settings.state_dir).org_signer("gz-nhc")
    client = TestClient(create_app(settings))

    def get(path: str) -> float:
        token = issue_token(org="gz-nhc", private_key=private, subject="bench", audience="oversight",
                            role="regulator", purpose="HCOMPL")
        started = time.perf_counter()
        r = client.get(path, headers={"Authorization": f"Bearer {token}"})
        elapsed = (time.perf_counter() - started) * 1000
        if r.status_code != 200:
            raise SystemExit(f"{path}: {r.status_code} {r.text[:200]}")
        return elapsed

    some = client.get("/audit/events?per_page=1", headers={"Authorization": "Bearer " + issue_token(
        org="gz-nhc", private_key=private, subject="bench", audience="oversight", role="regulator",
        purpose="HCOMPL")}).json()["events"][0]
    paths = {
        "hospitals table": "/hospitals",
        "hospital page": "/hospitals/gy-hosp-001",
        "anomalies": "/anomalies",
        "review queue": "/reviews",
        "audit search, first page": "/audit/events?per_page=100",
        "audit search, page 100": "/audit/events?per_page=100&page=100",
        "audit search, one accessor": f"/audit/events?accessor={some['accessor']['id']}&per_page=100",
        "audit search, one patient": f"/audit/events?patient={some['patient']}&per_page=100",
        "audit search, hospital + purpose": "/audit/events?hospital=gy-hosp-001&purpose=ETREAT",
    }
    rows = []
    for name, path in paths.items():
        get(path)  # warm
        times = [get(path) for _ in range(rounds)]
        rows.append((name, f"{percentile(times, 50):.1f}", f"{percentile(times, 95):.1f}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--accessors", type=int, default=2000)
    ap.add_argument("--hospitals", type=int, default=130)
    ap.add_argument("--rounds", type=int, default=30, help="requests per API route")
    args = ap.parse_args()
    settings = PlatformSettings()
    topic = Topic(f"bench.oversight.{uuid.uuid4().hex[:8]}", 1)
    print(f"generating {args.n} events ...", file=sys.stderr)
    bodies = events(args.n, args.accessors, args.hospitals)
    ensure_topics(settings.kafka_bootstrap, [topic])
    try:
        produced = produce(settings.kafka_bootstrap, topic, bodies, "oversight-bench")
        del bodies
        ceiling = raw_kafka(settings.kafka_bootstrap, topic, args.n, BATCH)
        with scratch_database("postgresql", Path(tempfile.gettempdir())) as url:
            out = pipeline(url, settings.kafka_bootstrap, topic, args.n)
            print(table([
                ("produce (acks=all)", f"{produced:,.0f} events/s", ""),
                ("raw Kafka consume (ceiling)", f"{ceiling:,.0f} events/s", ""),
                ("oversight consumer, committed", f"{out['rate']:,.0f} events/s",
                 f"CPU/event: consumer {out['consumer_us']:.0f} µs, PostgreSQL {out['postgres_us']:.0f} µs; "
                 f"{out['flags']} flags"),
            ], ("what", "rate", "")))
            print()
            print(table(api(url, args.n, args.rounds), (f"API at {args.n:,} events", "p50 ms", "p95 ms")))
    finally:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        admin.delete_topics([topic.name])
        admin.close()


if __name__ == "__main__":
    main()

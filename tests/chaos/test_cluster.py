"""A replicated Kafka cluster and a records consumer group under crashes, on a stack of their own.

The module starts a second platform beside the one ``make test`` runs: three
KRaft brokers (replication factor 3, ``min.insync.replicas=2``) and two
records processes in one consumer group, with its own state directory, its own
PostgreSQL database and ports 50 above the outer stack's (``CLUSTER_PORT_SHIFT``),
and stops all of it at the end. Under a bounded load of hospital submissions
and clinician reads it kills -9 the broker leading the partition the load writes
to, then one records process, and asserts that every acknowledged submission is
stored exactly once, every 200 read is in the audit log, every refusal in
between was a 503 with Retry-After, and ``healthgov audit verify`` passes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from sqlalchemy import create_engine, make_url, text

from services.adapters.auth import issue_token
from services.adapters.config import PlatformSettings
from services.adapters.keys import PlatformKeys
from services.cli import visits
from services.cli.stack import Stack, Topology
from services.contracts.topics import INGEST_RESOURCES
from tests.conftest import auth, first_patient, wait_for
from tests.integration.records.support import fresh_patient

# Starting a second platform of three JVMs takes minutes on a loaded 2-core machine; the load itself a minute.
pytestmark = pytest.mark.timeout(1200)
CLUSTER_PORT_SHIFT = 50  # inside the engineer's +0..+99 band: the cluster's ports never meet the outer stack's
HOSPITAL = "gy-hosp-001"
LOAD_S = 24.0  # the load runs this long; the crash happens KILL_AT_S into it and the restart RESTART_AT_S
KILL_AT_S = 5.0
RESTART_AT_S = 13.0
SETTLE_S = 90.0  # after the load: every acknowledged submission readable, every event in the log, within this
START_S = 300.0  # per component: ingest compiles the specification's rules and warms its workers before answering


@dataclass
class Cluster:
    stack: Stack
    settings: PlatformSettings
    keys: PlatformKeys
    patient: str = ""
    acked: set[str] = field(default_factory=set)  # every Condition the cluster acknowledged, over all the tests

    def token(self, aud: str = "records", **kw: Any) -> str:
        private, _ = self.keys.org_signer(HOSPITAL)
        return issue_token(org=HOSPITAL, private_key=private, subject="dr-chaos", audience=aud,
                           role=kw.pop("role", "clinician"), patient=None, purpose=kw.pop("purpose", "TREAT"),
                           ttl_s=120, extra=None)

    def ingest_token(self) -> str:
        return self.token("ingest", role="integration", purpose=None)

    @property
    def env(self) -> dict[str, str]:
        """The environment of a ``healthgov`` command run against this cluster."""
        env = {**os.environ, "NO_COLOR": "1", "HEALTHGOV_STATE_DIR": str(self.settings.state_dir),
               "HEALTHGOV_PORT_OFFSET": str(self.settings.port_offset), "HEALTHGOV_ENV": "test",
               "HEALTHGOV_KAFKA_BOOTSTRAP": self.stack.bootstrap}
        if self.settings.database_url:
            env["HEALTHGOV_DATABASE_URL"] = self.settings.database_url
        return env


@contextlib.contextmanager
def _own_database() -> Iterator[str | None]:
    """A database of the cluster's own on the tests' PostgreSQL server (its audit log must not meet the other's)."""
    outer = os.environ.get("HEALTHGOV_DATABASE_URL")
    if not outer:
        yield None  # SQLite in the cluster's state directory
        return
    name = f"healthgov_cluster_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(outer).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(outer).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    outer = PlatformSettings()
    state = tmp_path_factory.mktemp("cluster")
    with _own_database() as database_url:
        settings = PlatformSettings(state_dir=state, port_offset=outer.port_offset + CLUSTER_PORT_SHIFT,
                                    env="test", database_url=database_url)
        stack = Stack(settings, Topology(brokers=3, records=2))
        try:
            started = time.monotonic()
            stack.save_topology()
            stack.prepare_state()
            for name in stack.components:  # `stack up`, with room for a second platform's start on a busy machine
                stack.start(name, timeout_s=START_S)
            print(f"\n3-broker cluster with 2 records processes up in {time.monotonic() - started:.1f}s")
            c = Cluster(stack=stack, settings=settings, keys=PlatformKeys(state))
            patient = fresh_patient(first_patient())
            r = httpx.post(f"{settings.ingest_url}/fhir", timeout=60, json={
                "resourceType": "Bundle", "type": "transaction",
                "entry": [{"resource": patient, "request": {"method": "PUT", "url": f"Patient/{patient['id']}"}}]},
                headers=auth(c.ingest_token()))
            assert r.status_code == 200, r.text
            assert visits.admit(settings.ingest_url, c.ingest_token(), HOSPITAL, [patient["id"]]).status_code == 200
            c.patient = str(patient["id"])
            wait_for(lambda: _get(c, settings.records_url, f"/fhir/Patient/{c.patient}").status_code == 200, 60,
                     "the cluster's patient to be readable")
            yield c
        finally:
            stack.down()


def _get(c: Cluster, base: str, path: str) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers=auth(c.token()), timeout=15)


def _condition(patient: str) -> tuple[str, dict[str, Any]]:
    cid = str(uuid.uuid4())
    condition = {
        "resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
    }
    return cid, {"resourceType": "Bundle", "type": "transaction",
                 "entry": [{"resource": condition, "request": {"method": "PUT", "url": f"Condition/{cid}"}}]}


@dataclass
class Load:
    """What a bounded load of submissions and reads saw: acknowledgements, audited reads, every refusal."""

    acked: dict[str, str] = field(default_factory=dict)  # Condition id -> submission id
    events: list[str] = field(default_factory=list)  # event ids of ingest submissions and of 200 reads
    reads: int = 0
    refused: int = 0  # 503 with Retry-After (what a client must retry)
    wrong: list[str] = field(default_factory=list)  # anything else: a 5xx other than 503, a 503 without Retry-After
    lock: threading.Lock = field(default_factory=threading.Lock)

    def judge(self, r: httpx.Response) -> bool:
        """True for a 200; a 503 with Retry-After is counted; anything else is recorded as wrong."""
        if r.status_code == 200:
            return True
        with self.lock:
            if r.status_code == 503 and int(r.headers.get("Retry-After", "0")) > 0:
                self.refused += 1
            else:
                self.wrong.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")
        return False


def _run_load(c: Cluster, read_base: str, stop: threading.Event, load: Load) -> None:
    """One hospital submitting Conditions (retrying each with its Idempotency-Key until acknowledged) and one
    clinician reading the patient, until ``stop``."""

    def submit() -> None:
        while not stop.is_set():
            cid, bundle = _condition(c.patient)
            key = f"cluster-{cid}"
            while True:
                try:
                    r = httpx.post(f"{c.settings.ingest_url}/fhir", json=bundle, timeout=30,
                                   headers=auth(c.ingest_token(), **{"Idempotency-Key": key}))
                except httpx.HTTPError:
                    time.sleep(0.5)
                    continue
                if load.judge(r):
                    with load.lock:
                        load.acked[cid] = r.headers["X-Healthgov-Submission"]
                        load.events.append(r.headers["X-Healthgov-Event-Id"])
                    break
                time.sleep(0.5)
            time.sleep(0.1)

    def read() -> None:
        while not stop.is_set():
            try:
                r = _get(c, read_base, f"/fhir/Patient/{c.patient}")
            except httpx.HTTPError:
                time.sleep(0.5)
                continue
            if load.judge(r):
                with load.lock:
                    load.reads += 1
                    load.events.append(r.headers["X-Healthgov-Event-Id"])
            time.sleep(0.1)

    threads = [threading.Thread(target=f, daemon=True) for f in (submit, submit, read)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(60)


def _load_with_crash(c: Cluster, read_base: str, crash: Any, recover: Any) -> Load:
    """Run the load for ``LOAD_S``; ``crash()`` at ``KILL_AT_S``, ``recover()`` at ``RESTART_AT_S``."""
    load, stop = Load(), threading.Event()
    runner = threading.Thread(target=_run_load, args=(c, read_base, stop, load), daemon=True)
    started = time.monotonic()
    runner.start()
    time.sleep(KILL_AT_S)
    crash()
    time.sleep(max(0.0, started + RESTART_AT_S - time.monotonic()))
    recover()
    time.sleep(max(0.0, started + LOAD_S - time.monotonic()))
    stop.set()
    runner.join(90)
    assert not runner.is_alive(), "the load did not finish"
    print(f"load: {len(load.acked)} submissions acknowledged, {load.reads} reads, {load.refused} answered 503")
    return load


def _audit_engine(c: Cluster) -> Any:
    url = c.settings.database_url or c.settings.sqlite_url("audit")
    return create_engine(url)


def _assert_all_well(c: Cluster, load: Load, read_base: str) -> None:
    """Nothing lost, nothing duplicated, every 200 audited, the log verifies; no refusal but 503 + Retry-After."""
    assert not load.wrong, load.wrong
    assert load.acked and load.reads, "the load did nothing"
    started = time.monotonic()

    def stored() -> list[str]:
        r = _get(c, read_base, f"/fhir/Patient/{c.patient}/$everything")
        if r.status_code != 200:
            return []
        return [e["resource"]["id"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "Condition"]

    wait_for(lambda: set(load.acked) <= set(stored()), SETTLE_S, "every acknowledged Condition to be stored")
    readable = time.monotonic() - started
    conditions = stored()
    c.acked |= set(load.acked)
    assert len(conditions) == len(set(conditions)), "a Condition is stored twice"
    assert set(conditions) == c.acked, "a Condition nobody was told was stored is there"
    engine = _audit_engine(c)
    try:
        def logged() -> set[str]:
            with engine.connect() as conn:
                return set(conn.execute(text("SELECT event_id FROM audit_entry")).scalars())

        wait_for(lambda: set(load.events) <= logged(), SETTLE_S, "every event of the load in the audit log")
        with engine.connect() as conn:
            bodies = [orjson.loads(b) for b in conn.execute(
                text("SELECT body FROM audit_entry WHERE kind = 'ingest'")).scalars()]
    finally:
        engine.dispose()
    per_submission: dict[str, int] = {}
    for body in bodies:
        sub = body["details"].get("submission")
        per_submission[sub] = per_submission.get(sub, 0) + 1
    duplicated = {s: n for s, n in per_submission.items() if s in set(load.acked.values()) and n != 1}
    assert not duplicated, f"submissions with more than one ingest event: {duplicated}"
    print(f"all acknowledged data readable {readable:.1f}s after the load, every event in the log")
    verify = subprocess.run([str(Path(sys.executable).parent / "healthgov"), "audit", "verify"],
                            capture_output=True, text=True, timeout=120, env=c.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _partition_of_patient(c: Cluster) -> int:
    """The partition of ingest.resources.v1 this patient's submissions go to (the one that grows)."""
    consumer = KafkaConsumer(bootstrap_servers=c.stack.bootstrap)
    parts = [TopicPartition(INGEST_RESOURCES.name, p) for p in range(INGEST_RESOURCES.partitions)]
    try:
        before = consumer.end_offsets(parts)
        cid, bundle = _condition(c.patient)
        r = httpx.post(f"{c.settings.ingest_url}/fhir", json=bundle, timeout=30, headers=auth(c.ingest_token()))
        assert r.status_code == 200, r.text
        c.acked.add(cid)
        after = consumer.end_offsets(parts)
    finally:
        consumer.close()
    grown = [tp.partition for tp in parts if after[tp] > before[tp]]
    assert len(grown) == 1, grown
    return grown[0]


def _leader(c: Cluster, partition: int) -> int:
    admin = KafkaAdminClient(bootstrap_servers=c.stack.bootstrap)
    try:
        [topic] = admin.describe_topics([INGEST_RESOURCES.name])
    finally:
        admin.close()
    return next(int(p["leader_id"]) for p in topic["partitions"] if p["partition_index"] == partition)


def _leader_now(c: Cluster, partition: int) -> int:
    """The partition's leader, or -1 while the question cannot be answered: the admin client may ask the very
    broker just killed (it raises instead of asking another), which says nothing about the cluster."""
    try:
        return _leader(c, partition)
    except KafkaError:
        return -1


def _kill9(stack: Stack, name: str) -> None:
    pid = stack.pid(name)
    assert pid is not None, f"{name} is not running"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: stack.pid(name) is None, 10, f"{name} to die")


def test_killing_the_partition_leader_under_load_loses_nothing(cluster: Cluster) -> None:
    c = cluster
    partition = _partition_of_patient(c)
    leader = _leader(c, partition)
    victim = "kafka" if leader == 1 else f"kafka-{leader}"
    print(f"the patient's partition {partition} is led by broker {leader} ({victim}): kill -9 under load")
    moments: dict[str, float] = {}

    def crash() -> None:
        _kill9(c.stack, victim)
        moments["killed"] = time.monotonic()
        wait_for(lambda: _leader_now(c, partition) not in (leader, -1), 30, "another broker to lead the partition")
        print(f"partition {partition} led by broker {_leader_now(c, partition)} "
              f"{time.monotonic() - moments['killed']:.1f}s after the kill")

    def recover() -> None:
        c.stack.start(victim)
        print(f"{victim} restarted and healthy {time.monotonic() - moments['killed']:.1f}s after the kill")

    load = _load_with_crash(c, c.settings.records_url, crash, recover)
    _assert_all_well(c, load, c.settings.records_url)


def _members(c: Cluster) -> dict[str, set[int]]:
    """The records processes (stack components) of the consumer group, with their ingest.resources.v1 partitions."""
    admin = KafkaAdminClient(bootstrap_servers=c.stack.bootstrap)
    try:
        group = admin.describe_groups(["healthgov-records"])["healthgov-records"]
    finally:
        admin.close()
    out: dict[str, set[int]] = {}
    for member in group["members"]:
        instance = int((member["group_instance_id"] or "").rsplit("-", 1)[-1])
        owned = {p for a in (member["member_assignment"] or {}).get("assigned_partitions", [])
                 if a["topic"] == INGEST_RESOURCES.name for p in a["partitions"]}
        out["records" if instance == 0 else f"records-{instance + 1}"] = owned
    return out


def _member_of(c: Cluster, partition: int) -> str | None:
    """The records process whose consumer holds ``partition`` of ingest.resources.v1 (None: nobody, mid-rebalance)."""
    return next((name for name, owned in _members(c).items() if partition in owned), None)


def test_killing_one_of_two_records_consumers_the_other_takes_over(cluster: Cluster) -> None:
    c = cluster
    partition = _partition_of_patient(c)
    wait_for(lambda: sum(bool(p) for p in _members(c).values()) == 2, 30, "both records processes in the group")
    victim = _member_of(c, partition)
    assert victim is not None
    survivor = "records-2" if victim == "records" else "records"
    read_base = c.stack.components[survivor].url
    print(f"partition {partition} is consumed by {victim}: kill -9 it, {survivor} must take over")
    moments: dict[str, float] = {}

    def crash() -> None:
        _kill9(c.stack, victim)
        moments["killed"] = time.monotonic()

    def took_over() -> None:
        # Not restarted: the survivor must get the partition after the session timeout.
        wait_for(lambda: _member_of(c, partition) == survivor, 40, f"{survivor} to take partition {partition}")
        print(f"{survivor} holds partition {partition} {time.monotonic() - moments['killed']:.1f}s after the kill")

    try:
        load = _load_with_crash(c, read_base, crash, took_over)
        _assert_all_well(c, load, read_base)
    finally:
        if c.stack.pid(victim) is None:
            c.stack.start(victim)

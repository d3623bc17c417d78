"""End-to-end ingest throughput, beside the raw Kafka producer ceiling measured in the same run.

    .venv/bin/python bench/ingest.py [--copies 2] [--clients 2] [--chunk 1000]

Needs the running platform (``healthgov stack up``, same HEALTHGOV_* environment).
The 10-patient Synthea set is sent under fresh ids each time (every UUID
rewritten consistently), so every resource is new and really stored:

1. NDJSON: ``POST /fhir/$import`` in chunks of ``--chunk`` lines from
   ``--clients`` concurrent clients; 2. transaction Bundles: each patient's resources in
   transactions of ``--bundle`` resources, directory resources in batch Bundles.

Each is timed from the first request until records has stored every resource
(its ``/healthz`` counter), then a sample is read back through the records API
(so "stored" means readable). Latency p50/p99 is per request (acknowledged =
on Kafka, acks=all). The ceiling: kafka-python alone, acks=all with
idempotence (the platform's producer settings), producing messages of the same
sizes as ingest produces for the same data (sealed here with the same code),
to a scratch topic; resources/s at that rate = messages/s x resources per message.
Both run after ``--warmup`` unmeasured copies. Printed last: the CPU time each
component of the platform spent per resource stored (from /proc), which says
where the end-to-end rate is lost.

``--population COPIES`` loads a Synthea-sized population instead (bench/population.py:
the shipped fixtures with the 11 derived types, 24 types, 18,644 resources a
copy under fresh ids; 22 copies are 410,168 resources) as a hospital would with
``healthgov ingest``: one NDJSON file per type, sent in requests of at most
``--chunk`` lines and 32 MiB by ``--clients`` concurrent clients. It prints the
throughput (acknowledged and stored), every type's accepted and rejected counts,
rejections grouped by reason, and the peak resident memory of every process of
the platform (each validation worker on its own) over the whole load.

``--scale`` measures how records scales out, on a stack started with
``healthgov stack up --records 2`` (any number of brokers): NDJSON end to end
with one records consumer (the other process is stopped and the group has
rebalanced), then with two (it is started again and has rejoined), then the raw
producer on the same cluster, all in one run. "stored" counts every records
process's resources.

``--consumer postgresql|sqlite`` measures instead the records consumer alone, in
this process, without the platform (PostgreSQL only needs HEALTHGOV_DATABASE_URL):
the messages ingest would send for ``--copies`` sets are sealed first, then
stored by ``IngestHandler`` into a scratch database, poll batch by poll batch; it
prints the CPU time per resource of this process and of PostgreSQL's backends.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import math
import os
import re
import statistics
import sys
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

from services.adapters.auth import issue_token
from services.adapters.config import REPO_ROOT
from services.adapters.keys import PlatformKeys
from services.cli.ingest import patients_first
from services.cli.stack import Stack, replica_name
from services.contracts.topics import INGEST_RESOURCES
from services.fhir.compartment import DIRECTORY_TYPES, patient_id_of
from services.ingest.labels import DEFAULT_TABLE
from services.ingest.prepare import Context, prepare_lines

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu import ComponentClock
from population import population
from rss import RssPeaks

TEN = REPO_ROOT / "deploy" / "demo" / "fixtures" / "synthea-10-patients"
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HOSPITAL = "gy-hosp-001"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def fixture_lines(copies: int) -> list[bytes]:
    """The 10-patient set ``copies`` times, each copy under fresh ids."""
    raw = b"\n".join(ln for f in sorted(TEN.glob("*.ndjson.gz"), key=lambda f: patients_first(f.name))
                     for ln in gzip.decompress(f.read_bytes()).splitlines() if ln.strip())
    out: list[bytes] = []
    for _ in range(copies):
        salt = uuid.uuid4().hex

        def fresh_id(m: re.Match[bytes], salt: str = salt) -> bytes:
            return str(uuid.uuid5(uuid.UUID(int=0), salt + m.group().decode())).encode()

        out.extend(_UUID.sub(fresh_id, raw).splitlines())
    return out


class Platform:
    def __init__(self) -> None:
        self.stack = Stack()
        self.s = self.stack.settings  # its Kafka bootstrap names every broker of the stack
        self.keys = PlatformKeys(self.s.state_dir)
        self.private = self.keys.org_signer(HOSPITAL)[0]
        self.http = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=16))

    def token(self, aud: str = "ingest", **kw: Any) -> str:
        return issue_token(org=HOSPITAL, private_key=self.private, subject="bench", audience=aud,
                           role=kw.pop("role", "integration"), **kw)

    def records(self) -> list[str]:
        """The records processes that are running (a stack may run several in one consumer group)."""
        names = [replica_name("records", k) for k in range(1, self.stack.topology.records + 1)]
        return [n for n in names if self.stack.pid(n) is not None]

    def stored(self) -> int:
        """Resources stored since start by every running records process together."""
        return sum(int(self.http.get(f"{self.stack.components[n].url}/healthz").json()["stored"])
                   for n in self.records())

    def post(self, path: str, body: bytes, ctype: str) -> float:
        t = time.perf_counter()
        r = self.http.post(f"{self.s.ingest_url}{path}", content=body,
                           headers={"Authorization": f"Bearer {self.token()}", "Content-Type": ctype})
        if r.status_code != 200:
            raise SystemExit(f"{path}: {r.status_code} {r.text[:300]}")
        return time.perf_counter() - t

    def readable(self, samples: list[dict[str, Any]]) -> None:
        # Sending records gives the hospital no care relationship (docs/architecture.md §10): the sample
        # is read back under break-glass, which needs none and is audited like any read.
        for doc in samples:
            tok = self.token("records", role="clinician", purpose="ETREAT",
                             extra={"break_glass_reason": "benchmark read-back"})
            r = self.http.get(f"{self.s.records_url}/fhir/{doc['resourceType']}/{doc['id']}",
                              headers={"Authorization": f"Bearer {tok}"})
            if r.status_code != 200:
                raise SystemExit(f"not readable: {doc['resourceType']}/{doc['id']}: {r.status_code}")


def run(p: Platform, requests: list[tuple[str, bytes, str]], n: int, clients: int,
        samples: list[dict[str, Any]], first: int = 1) -> dict[str, float]:
    """Send, wait until records stored ``n`` more resources, read samples back."""
    base = p.stored()
    clock = ComponentClock(p.s)
    clock.start()
    started = time.perf_counter()
    # The ``first`` requests register the patients (a hospital writes only about patients it registered):
    # they are acknowledged before the rest is sent.
    with ThreadPoolExecutor(clients) as ex:
        latencies = list(ex.map(lambda req: p.post(*req), requests[:first]))
        latencies += list(ex.map(lambda req: p.post(*req), requests[first:]))
    acked = time.perf_counter() - started
    while p.stored() < base + n:
        if time.perf_counter() - started > 900:
            raise SystemExit(f"records stored {p.stored() - base} of {n}")
        time.sleep(0.05)
    stored = time.perf_counter() - started
    cpu_us = clock.per_request(n, unit=1e6)
    p.readable(samples)
    return {"resources": n, "acked_s": acked, "stored_s": stored, "rate": n / stored, "ack_rate": n / acked,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * pct(latencies, 99),
            "requests": len(requests), "cpu_us": cpu_us}


def ndjson(p: Platform, lines: list[bytes], chunk: int, clients: int) -> dict[str, float]:
    lines = sorted(lines, key=lambda ln: b'"resourceType":"Patient"' not in ln[:40])  # every copy's Patients first
    reqs = [("/fhir/$import", b"\n".join(lines[i:i + chunk]), "application/fhir+ndjson")
            for i in range(0, len(lines), chunk)]
    samples = [orjson.loads(lines[i]) for i in (0, len(lines) // 2, len(lines) - 1)]
    return run(p, reqs, len(lines), clients, samples)


def bundles(p: Platform, lines: list[bytes], clients: int, per_bundle: int) -> dict[str, float]:
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    directory: list[dict[str, Any]] = []
    for ln in lines:
        doc = orjson.loads(ln)
        if doc["resourceType"] in DIRECTORY_TYPES:
            directory.append(doc)
        else:
            by_patient[patient_id_of(doc) or "?"].append(doc)

    def bundle(kind: str, docs: list[dict[str, Any]]) -> bytes:
        return orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": [
            {"fullUrl": f"urn:uuid:{d['id']}", "resource": d,
             "request": {"method": "PUT", "url": f"{d['resourceType']}/{d['id']}"}} for d in docs]})

    # Each patient's first transaction holds its Patient (the lines come patients first): those go before the rest.
    reqs = [("/fhir", bundle("transaction", docs[:per_bundle]), "application/fhir+json")
            for docs in by_patient.values()]
    reqs += [("/fhir", bundle("transaction", docs[i:i + per_bundle]), "application/fhir+json")
             for docs in by_patient.values() for i in range(per_bundle, len(docs), per_bundle)]
    reqs += [("/fhir", bundle("batch", directory[i:i + 500]), "application/fhir+json")
             for i in range(0, len(directory), 500)]
    samples = [docs[-1] for docs in list(by_patient.values())[:5]]
    return run(p, reqs, len(lines), clients, samples, first=len(by_patient))


def raw_producer(p: Platform, lines: list[bytes], chunk: int) -> dict[str, float]:
    """kafka-python alone, acks=all + idempotence, the same message sizes ingest produces for ``lines``."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from services.adapters.kafka import replication_for

    ctx = Context(records_public_key=p.keys.records_hpke_public(), pseudonym_key=p.keys.pseudonym_key(),
                  labels_file=str(DEFAULT_TABLE))
    messages = [m for i in range(0, len(lines), chunk)
                for m in prepare_lines(ctx, HOSPITAL, "bench", i + 1, lines[i:i + chunk]).messages]
    topic = "bench.raw-producer"
    admin = KafkaAdminClient(bootstrap_servers=p.s.kafka_bootstrap)
    # Replicated as the platform's topics are on this cluster: the ceiling pays the same acks=all round trips.
    replicas, min_insync = replication_for(p.stack.topology.brokers)
    with contextlib.suppress(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(topic, 6, replicas, topic_configs={"min.insync.replicas": str(min_insync)})])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=p.s.kafka_bootstrap, acks="all", enable_idempotence=True,
                             linger_ms=2, batch_size=256 * 1024, max_request_size=8 * 1024 * 1024)
    producer.send(topic, b"warm-up").get(timeout=30)
    started = time.perf_counter()
    futures = [producer.send(topic, value=m.value, key=m.key) for m in messages]
    producer.flush()
    for f in futures:
        f.get(timeout=60)
    elapsed = time.perf_counter() - started
    producer.close()
    size = sum(len(m.value) for m in messages)
    return {"messages": len(messages), "msg_rate": len(messages) / elapsed, "mb_s": size / elapsed / 1e6,
            "rate": len(lines) / elapsed, "avg_kb": size / len(messages) / 1e3}


def preparation_cpu(p: Platform, lines: list[bytes], chunk: int) -> dict[str, float]:
    """CPU-time rate of ingest's per-resource work on one core (parse, validate, references, label, seal).

    CPU time, not wall time, so that other load on the machine does not skew it: this is
    what one validation worker can do.
    """
    ctx = Context(records_public_key=p.keys.records_hpke_public(), pseudonym_key=p.keys.pseudonym_key(),
                  labels_file=str(DEFAULT_TABLE))
    started = time.process_time()
    for i in range(0, len(lines), chunk):
        prepare_lines(ctx, HOSPITAL, "bench", i + 1, lines[i:i + chunk])
    return {"rate": len(lines) / (time.process_time() - started)}


def consumer_cpu(copies: int, chunk: int, store: str) -> dict[str, float]:
    """CPU per resource of ``IngestHandler`` in this process (and PostgreSQL's), on a scratch database."""
    import gc
    import tempfile

    from audit_common import scratch_database
    from cpu import _postmaster, _tree_cpu_s

    from services.adapters.audit_log import AuditLog
    from services.adapters.runtime import freeze_startup_heap
    from services.records.consumer import IngestHandler
    from services.records.gate import Gate
    from services.records.notices import NoticeOutbox
    from services.records.store import make_engine
    from services.records.vault import Vault

    class Record:  # what the consumer loop hands over: kafka-python's ConsumerRecord fields
        def __init__(self, offset: int, key: bytes | None, value: bytes) -> None:
            self.topic, self.partition, self.offset, self.key, self.value = "ingest.resources.v1", 0, offset, key, value

    class NoDeadLetters:
        def send_all(self, messages: Any) -> None:
            raise SystemExit(f"unexpected dead letters: {len(messages)}")

    workdir = Path(tempfile.mkdtemp())
    keys = PlatformKeys(workdir / "state")
    ctx = Context(records_public_key=keys.records_hpke_public(), pseudonym_key=keys.pseudonym_key(),
                  labels_file=str(DEFAULT_TABLE))
    # One poll batch per NDJSON request: what the consumer sees when ingest keeps up.
    batches = [[Record(n, m.key, m.value) for n, m in enumerate(
        prepare_lines(ctx, HOSPITAL, f"bench-{c}", i + 1, lines[i:i + chunk]).messages)]
        for c, lines in enumerate([fixture_lines(1)] + [fixture_lines(1) for _ in range(copies)])
        for i in range(0, len(lines), chunk)]
    warm = math.ceil(len(fixture_lines(1)) / chunk)
    with scratch_database(store, workdir) as url:
        engine = make_engine(url)
        handler = IngestHandler(engine=engine, vault=Vault(keys.keyring(), keys.blind_index_key(),
                                                           keys.pseudonym_key()),
                                hpke_private=keys.records_hpke_private(), producer=NoDeadLetters(),  # type: ignore[arg-type]
                                gate=Gate(AuditLog(NoDeadLetters()), NoticeOutbox(engine)))  # type: ignore[arg-type]
        for batch in batches[:warm]:
            handler(batch)
        freeze_startup_heap()  # as the records service does once started
        postmaster = _postmaster(os.environ.get("HEALTHGOV_PG_PORT", "55432")) if store == "postgresql" else None
        pg = _tree_cpu_s(postmaster) if postmaster else 0.0
        base, started = handler.stored, time.process_time()
        for batch in batches[warm:]:
            handler(batch)
        used = time.process_time() - started
        pg = (_tree_cpu_s(postmaster) - pg) if postmaster else 0.0
        n = handler.stored - base
        engine.dispose()
    gc.collect()
    return {"resources": n, "consumer_us": 1e6 * used / n, "postgres_us": 1e6 * pg / n}


def population_load(p: Platform, copies: int, chunk: int, clients: int) -> None:
    """A population through the ingest API as ``healthgov ingest`` sends it; throughput, rejections, peak RSS."""
    from services.cli.ingest import Sender, Tally, ndjson_requests

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    by_type = population(copies)
    n = sum(len(v) for v in by_type.values())
    size = sum(len(ln) + 1 for v in by_type.values() for ln in v)
    print(f"population: {n} resources of {len(by_type)} types ({size / 1e6:.0f} MB NDJSON), {copies} copies of "
          f"{n // copies} under fresh ids; largest resource {max(len(ln) for v in by_type.values() for ln in v)} B")
    requests = [r for rtype, lines in sorted(by_type.items())
                for r in ndjson_requests(f"{rtype}.ndjson", b"\n".join(lines), max_lines=chunk)]
    del by_type
    tallies = [Tally() for _ in range(clients)]
    base = p.stored()
    with RssPeaks(p.s) as rss:
        started = time.perf_counter()

        def client(k: int) -> None:
            with httpx.Client(base_url=p.s.ingest_url, timeout=600) as http:
                sender = Sender(http, p.token, False, tallies[k], 0, None)
                for req in requests[k::clients]:
                    sender.send(req)

        with ThreadPoolExecutor(clients) as ex:
            list(ex.map(client, range(clients)))
        acked = time.perf_counter() - started
        tally = Tally()
        for t in tallies:
            for name in ("sent", "accepted", "rejected", "reasons"):
                getattr(tally, name).update(getattr(t, name))
            for reason, example in t.examples.items():
                tally.examples.setdefault(reason, example)
        accepted = sum(tally.accepted.values())
        while p.stored() < base + accepted:
            if time.perf_counter() - started > 3600:
                raise SystemExit(f"records stored {p.stored() - base} of {accepted}")
            time.sleep(0.2)
        stored = time.perf_counter() - started
    print("\n".join(tally.lines()))
    print(f"accepted {accepted} of {n}, rejected {tally.total_rejected}")
    print(f"throughput: {accepted / acked:.0f} resources/s acknowledged ({acked:.0f} s), "
          f"{accepted / stored:.0f} resources/s stored by records ({stored:.0f} s)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("peak RSS per process (MB):")
    for name, mb in sorted(rss.peaks.items()):
        print(f"  {name:34} {mb:7.0f}")


def group_members(p: Platform) -> int:
    """Members of the records consumer group that hold partitions of ingest.resources.v1."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=p.s.kafka_bootstrap)
    try:
        group = admin.describe_groups(["healthgov-records"])["healthgov-records"]
    finally:
        admin.close()
    return sum(1 for m in group["members"]
               if any(a["topic"] == INGEST_RESOURCES.name and a["partitions"]
                      for a in (m["member_assignment"] or {}).get("assigned_partitions", [])))


def await_members(p: Platform, n: int, timeout_s: float = 120) -> float:
    """Wait until ``n`` records consumers share the partitions; return how long the rebalance took."""
    started = time.perf_counter()
    while group_members(p) != n:
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"the records group did not settle at {n} member(s)")
        time.sleep(0.5)
    return time.perf_counter() - started


def scale(p: Platform, copies: int, chunk: int, clients: int) -> None:
    """NDJSON end to end with 1 and 2 records consumers and the raw producer, on the same cluster in one run."""
    if p.stack.topology.records < 2:
        raise SystemExit("--scale needs a stack started with `healthgov stack up --records 2`")
    second = replica_name("records", 2)
    rows: list[tuple[str, dict[str, float]]] = []
    p.stack.stop(second)
    # A static member that stops is replaced only after the session timeout: the rebalance is part of the setup.
    print(f"records group: 1 member after {await_members(p, 1):.1f}s")
    rows.append(("NDJSON, 1 records consumer", ndjson(p, fixture_lines(copies), chunk, clients)))
    p.stack.start(second)
    print(f"records group: 2 members after {await_members(p, 2):.1f}s")
    rows.append(("NDJSON, 2 records consumers", ndjson(p, fixture_lines(copies), chunk, clients)))
    ceiling = raw_producer(p, fixture_lines(copies), chunk)
    brokers = p.stack.topology.brokers
    print(f"\n{brokers} broker(s); {'path':36} {'resources/s':>12} {'acked/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for label, r in rows:
        print(f"{'':13}{label:36} {r['rate']:12.0f} {r['ack_rate']:9.0f} {r['p50_ms']:8.0f} {r['p99_ms']:8.0f}")
    print(f"{'':13}{'raw producer, same cluster':36} {ceiling['rate']:12.0f}  "
          f"{ceiling['msg_rate']:.0f} msg/s, {ceiling['mb_s']:.1f} MB/s, acks=all")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=2, help="copies of the 10-patient set (fresh ids each)")
    ap.add_argument("--clients", type=int, default=2, help="concurrent HTTP clients")
    ap.add_argument("--chunk", type=int, default=1000, help="NDJSON lines per request")
    ap.add_argument("--bundle", type=int, default=250, help="resources per transaction Bundle (one patient)")
    ap.add_argument("--only", choices=("ndjson", "bundles"), default=None,
                    help="run only this path (no producer ceiling, no per-core figure): a lighter run to compare")
    ap.add_argument("--consumer", choices=("postgresql", "sqlite"), default=None,
                    help="measure only the records consumer, in this process, on a scratch database")
    ap.add_argument("--warmup", type=int, default=1,
                    help="copies sent first, unmeasured: a freshly started broker spends its first minutes "
                         "compiling (JIT), which a long-running platform has behind it")
    ap.add_argument("--population", type=int, default=None, metavar="COPIES",
                    help="load a Synthea-sized population of COPIES x 18,644 resources (24 types) and report "
                         "throughput, rejections by reason and peak RSS per process (22 copies: 410,168)")
    ap.add_argument("--scale", action="store_true",
                    help="NDJSON with 1 then 2 records consumers beside the raw producer, same cluster and run "
                         "(needs `healthgov stack up --records 2`)")
    args = ap.parse_args()
    if args.scale:
        p = Platform()
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        if args.warmup:
            ndjson(p, fixture_lines(args.warmup), args.chunk, args.clients)
        scale(p, args.copies, args.chunk, args.clients)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return
    if args.population:
        population_load(Platform(), args.population, args.chunk, args.clients)
        return
    if args.consumer:
        r = consumer_cpu(args.copies, args.chunk, args.consumer)
        print(f"records consumer on {args.consumer}: {r['resources']:.0f} resources stored, CPU us per resource: "
              f"consumer {r['consumer_us']:.1f}, postgres {r['postgres_us']:.1f}")
        return
    p = Platform()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    lines = fixture_lines(args.copies)
    print(f"data: {len(lines)} resources ({sum(map(len, lines)) / 1e6:.1f} MB NDJSON), fresh ids per run\n")
    if args.warmup:
        ndjson(p, fixture_lines(args.warmup), args.chunk, args.clients)
        if args.only is None:
            raw_producer(p, fixture_lines(args.warmup), args.chunk)
    results: dict[str, dict[str, float]] = {}
    if args.only in (None, "ndjson"):
        results["NDJSON"] = ndjson(p, lines, args.chunk, args.clients)
    if args.only in (None, "bundles"):
        results["transaction Bundles"] = bundles(p, fixture_lines(args.copies), args.clients, args.bundle)
    print(f"{'path':38} {'resources/s':>12} {'acked/s':>9} {'p50 ms':>8} {'p99 ms':>8}  requests")
    for name, r in results.items():
        label = ("NDJSON $import" if name == "NDJSON" else name) + ", stored+readable"
        print(f"{label:38} {r['rate']:12.0f} {r['ack_rate']:9.0f} {r['p50_ms']:8.0f} {r['p99_ms']:8.0f}  "
              f"{r['requests']:.0f}")
    ceiling = None
    if args.only is None:
        ceiling = raw_producer(p, fixture_lines(args.copies), args.chunk)
        print(f"{'raw kafka-python producer (ceiling)':38} {ceiling['rate']:12.0f} {'':9} {'':8} {'':8}  "
              f"{ceiling['messages']} msgs of {ceiling['avg_kb']:.0f} kB avg, {ceiling['msg_rate']:.0f} msg/s, "
              f"{ceiling['mb_s']:.1f} MB/s, acks=all")
        cpu = preparation_cpu(p, fixture_lines(1), args.chunk)
        print(f"{'ingest work per core (CPU time)':38} {cpu['rate']:12.0f} {'':9} {'':8} {'':8}  "
              "structure + rules validation + references + labels + report + HPKE seal")
    for name, r in results.items():
        parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["cpu_us"].items(), key=lambda kv: -kv[1]))
        print(f"CPU us per resource stored, {name}: total {sum(r['cpu_us'].values()):.0f} = {parts}")
    if ceiling is not None and "NDJSON" in results:
        print(f"\nNDJSON end to end = {results['NDJSON']['rate'] / ceiling['rate']:.0%} of the raw producer rate "
              f"(target >= 50%, and >= 5,000 resources/s)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

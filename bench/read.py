"""Policy-checked, audited reads at a fixed offered rate, beside the components underneath.

    .venv/bin/python bench/read.py [--rate 200] [--seconds 15] [--everything-rate 200]
                                   [--phases opa,kafka,single,everything]

Against the running platform (``healthgov stack up``; the 10-patient set is
loaded through the ingest API first if it is not there yet), in one run:

1. bare OPA: ``POST /v1/data/healthgov/access/decision`` with the input the
   records service builds for a clinician's read, at the offered rate;
2. bare Kafka: the platform's producer adapter (acks=all, idempotent, send +
   flush, as records publishes an AuditEvent) of a ~1 KB event to a bench
   topic, at the offered rate;
3. ``GET /fhir/Condition/{id}`` as a treating clinician: authenticate, decrypt,
   ask OPA, publish the AuditEvent with acks=all, respond;
4. ``GET /fhir/Patient/{id}/$everything`` of the smallest fixture patient.

The load is open-loop: request *i* is due at ``start + i/rate`` whether or not
earlier ones have finished, and its latency counts from when it was due, so
a slow server cannot hide its queueing (no coordinated omission). Each phase
runs ``--warmup`` seconds unmeasured first. Printed: offered and achieved
rate, p50/p99/max latency in ms, errors; then, for each phase, the
CPU time each component of the platform spent per request (from /proc, so it
counts the work a read causes everywhere: the audit consumer, the broker,
PostgreSQL). The machine is shared and noisy: compare rows of the same run,
not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from services.cli import visits
from services.cli.ingest import patients_first

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from services.adapters.auth import issue_token  # noqa: E402
from services.adapters.config import PlatformSettings  # noqa: E402
from services.adapters.kafka import Message, Producer, ensure_topics  # noqa: E402
from services.adapters.keys import PlatformKeys  # noqa: E402
from services.contracts.events import Accessor, AuditDecision, AuditEvent, ResourceRef  # noqa: E402
from services.contracts.topics import Topic  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from cpu import ComponentClock  # noqa: E402

FIXTURES = REPO / "deploy" / "demo" / "fixtures" / "synthea-10-patients"
BENCH_TOPIC = Topic("bench.acks-all.v1", 1)  # never the audit topic: the bench must not pollute the log
DECISION = "/v1/data/healthgov/access/decision"


@dataclass
class Result:
    name: str
    offered: float
    achieved: float
    latencies_ms: list[float]
    errors: int
    cpu_ms: dict[str, float] | None = None  # CPU ms per request, by component

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def row(self) -> str:
        return (f"| {self.name} | {self.offered:.0f}/s | {self.achieved:.0f}/s | {self.pct(50):.1f} | "
                f"{self.pct(99):.1f} | {max(self.latencies_ms, default=math.nan):.1f} | {self.errors} |")


def fixtures() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in sorted(FIXTURES.glob("*.ndjson.gz")):
        out.extend(json.loads(line) for line in gzip.decompress(f.read_bytes()).splitlines() if line.strip())
    return out


def subject_of(res: dict[str, Any]) -> str | None:
    if res["resourceType"] == "Patient":
        return res["id"]
    ref = (res.get("subject") or res.get("patient") or {}).get("reference", "")
    return ref.split("/", 1)[1] if ref.startswith("Patient/") else None


class Tokens:
    """Pre-minted tokens (each jti is single-use), so signing is not measured."""

    def __init__(self, keys: PlatformKeys, org: str, purpose: str, count: int) -> None:
        private = keys.org_signer(org)[0]
        self._tokens = [issue_token(org=org, private_key=private, subject="bench", audience="records",
                                    role="clinician", purpose=purpose, ttl_s=300) for _ in range(count)]
        self._next = 0

    def take(self) -> str:
        tok = self._tokens[self._next]
        self._next += 1
        return tok


def ensure_loaded(settings: PlatformSettings, keys: PlatformKeys, resources: list[dict[str, Any]], probe: str) -> None:
    """Load the 10-patient set through ingest unless records already serves it."""
    tokens = Tokens(keys, "gy-hosp-001", "TREAT", 1)
    r = httpx.get(f"{settings.records_url}{probe}", headers={"Authorization": f"Bearer {tokens.take()}"}, timeout=30)
    if r.status_code == 200:
        return
    print("loading the 10-patient set through the ingest API…", file=sys.stderr)
    private = keys.org_signer("gy-hosp-001")[0]
    with httpx.Client(base_url=settings.ingest_url, timeout=300) as c:
        for f in sorted(FIXTURES.glob("*.ndjson.gz"), key=lambda f: patients_first(f.name)):
            tok = issue_token(org="gy-hosp-001", private_key=private, subject="bench", audience="ingest",
                              role="integration")
            c.post("/fhir/$import", content=gzip.decompress(f.read_bytes()),
                   headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/fhir+ndjson"}
                   ).raise_for_status()
        tok = issue_token(org="gy-hosp-001", private_key=private, subject="bench", audience="ingest",
                          role="integration")
        ids = [r["id"] for r in resources if r["resourceType"] == "Patient"]
        visits.admit(settings.ingest_url, tok, "gy-hosp-001", ids).raise_for_status()  # evidence of care today
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        tok = Tokens(keys, "gy-hosp-001", "TREAT", 1).take()
        if httpx.get(f"{settings.records_url}{probe}", headers={"Authorization": f"Bearer {tok}"},
                     timeout=30).status_code == 200:
            return
        time.sleep(1)
    sys.exit("records never served the loaded fixtures")


async def open_loop(name: str, rate: float, seconds: float, warmup: float,
                    call: Callable[[], Awaitable[bool]], clock: ComponentClock | None = None) -> Result:
    """Fire ``call`` at ``rate``/s for warmup + seconds; measure the last ``seconds`` from due times."""
    total = int((warmup + seconds) * rate)
    skip = int(warmup * rate)
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if i == skip and clock is not None:  # when the measured part is due, not when the task was made
            clock.start()
        ok = await call()
        if i >= skip:
            latencies.append((time.perf_counter() - due) * 1000)
            errors += 0 if ok else 1

    tasks = [asyncio.create_task(one(i)) for i in range(total)]
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - (start + skip / rate)
    cpu = clock.per_request(len(latencies)) if clock is not None else None
    return Result(name, rate, len(latencies) / elapsed, latencies, errors, cpu)


def audit_like_event() -> bytes:
    """An AuditEvent of the size a single-resource disclosure produces."""
    return AuditEvent(
        kind="disclosure", accessor=Accessor(id="bench", org="gy-hosp-001", org_type="hospital", role="clinician"),
        purpose="TREAT", patient="p-" + "0" * 32, resources=[ResourceRef(type="Condition", id="0" * 36, version="1")],
        decision=AuditDecision(allow=True, reasons=["clinician_care_relationship"], policy_version="2026.11.2+x",
                               obligations={"deidentify": "none", "redact_labels": [], "notify_patient": False,
                                            "notify_after": None, "review": False}),
        data_digest="0" * 64).canonical()


async def run(args: argparse.Namespace) -> list[Result]:
    settings = PlatformSettings()
    keys = PlatformKeys(settings.state_dir)
    resources = fixtures()
    condition = next(r for r in resources if r["resourceType"] == "Condition")
    sizes: dict[str, int] = {}
    for r in resources:
        pid = subject_of(r)
        if pid:
            sizes[pid] = sizes.get(pid, 0) + 1
    small = min(sizes, key=lambda p: sizes[p])
    ensure_loaded(settings, keys, resources, f"/fhir/Condition/{condition['id']}")
    per_phase = int((args.warmup + args.seconds) * max(args.rate, args.everything_rate)) + 10
    results: list[Result] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:
        # 1. bare OPA, with the input records sends for this read
        opa_input = {"input": {
            "subject": {"id": "bench", "org": "gy-hosp-001", "org_type": "hospital", "role": "clinician",
                        "patient": None},
            "action": "read", "purpose": "TREAT",
            "resource": {"patient": "p-" + "0" * 32, "type": "Condition", "labels": [], "hospital": "gy-hosp-001"},
            "relationship": {"care": True}, "consents": [], "legal": {"warrant": None, "ethics_approval": None},
            "break_glass": None, "now": "2026-11-22T10:00:00Z"}}

        async def opa() -> bool:
            async with http.post(settings.opa_url + DECISION, json=opa_input) as r:
                return r.status == 200 and (await r.json())["result"]["allow"] is True

        if "opa" in args.phases:
            results.append(await open_loop("bare OPA decision (REST)", args.rate, args.seconds, args.warmup, opa,
                                           ComponentClock(settings)))

        # 2. bare acks=all produce through the platform's adapter
        if "kafka" in args.phases:
            ensure_topics(settings.kafka_bootstrap, [BENCH_TOPIC])
            producer = Producer(settings.kafka_bootstrap, "healthgov-bench")
            event = audit_like_event()
            pool = ThreadPoolExecutor(max_workers=40)
            loop = asyncio.get_running_loop()
            producer.send(Message(BENCH_TOPIC.name, event))

            async def produce() -> bool:
                await loop.run_in_executor(pool, producer.send, Message(BENCH_TOPIC.name, event))
                return True

            results.append(await open_loop(f"bare Kafka produce, acks=all ({len(event)} B)", args.rate,
                                           args.seconds, args.warmup, produce, ComponentClock(settings)))
            producer.close()
            pool.shutdown()

        # 3. and 4. the records read API
        def reader(path: str, tokens: Tokens) -> Callable[[], Awaitable[bool]]:
            url = settings.records_url + path

            async def call() -> bool:
                async with http.get(url, headers={"Authorization": f"Bearer {tokens.take()}"}) as r:
                    await r.read()
                    return r.status == 200 and "X-Healthgov-Event-Id" in r.headers

            return call

        if "single" in args.phases:
            results.append(await open_loop(
                "records: GET /fhir/Condition/{id} (OPA + acks=all audit)", args.rate, args.seconds, args.warmup,
                reader(f"/fhir/Condition/{condition['id']}", Tokens(keys, "gy-hosp-001", "TREAT", per_phase)),
                ComponentClock(settings)))
        if "everything" in args.phases:
            results.append(await open_loop(
                f"records: GET $everything ({sizes[small]} resources)", args.everything_rate, args.seconds,
                args.warmup, reader(f"/fhir/Patient/{small}/$everything",
                                    Tokens(keys, "gy-hosp-001", "TREAT", per_phase)), ComponentClock(settings)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="offered requests/s (single reads, baselines)")
    parser.add_argument("--everything-rate", type=float, default=200.0, help="offered requests/s for $everything")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds before each phase")
    parser.add_argument("--phases", default="opa,kafka,single,everything",
                        help="comma-separated phases to run: opa, kafka, single, everything")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    args.phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    results = asyncio.run(run(args))
    print("| what | offered | achieved | p50 ms | p99 ms | max ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(r.row())
    for r in results:
        if r.cpu_ms:
            parts = ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(r.cpu_ms.items(), key=lambda kv: -kv[1]))
            print(f"CPU ms per request, {r.name}: total {sum(r.cpu_ms.values()):.2f} = {parts}")
    if args.json:
        print(json.dumps([{"name": r.name, "offered": r.offered, "achieved": r.achieved, "p50_ms": r.pct(50),
                           "p99_ms": r.pct(99), "errors": r.errors, "cpu_ms": r.cpu_ms} for r in results],
                         indent=2))


if __name__ == "__main__":
    main()

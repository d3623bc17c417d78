"""Proof latency and verification time of an audit log of 10^6 entries.

    .venv/bin/python bench/audit_proofs.py [--n 1000000] [--stores sqlite,postgresql] [--proofs 2000]

For each store, in a scratch database (PostgreSQL: a new database in the platform's server,
``HEALTHGOV_DATABASE_URL``; SQLite: a file), dropped afterwards:

1. build the log through ``MerkleLog.append`` in batches of 10,000 realistic events (~900 bytes),
   signing a checkpoint every 100,000 entries (each re-derived from the entries), and report the rate;
2. latency (p50/p99 over ``--proofs`` random requests) of an inclusion proof, a consistency proof
   and a root at full size, read from the stored subtree hashes, beside the raw ceiling of the
   database underneath: a single-row primary-key SELECT on the same table, same connection pool.
   Every proof is checked against the root (outside the clock);
3. the time of a full independent verification of the 10^6 entries over HTTP
   (``healthgov audit verify``'s code: the audit service on the scratch database, its entries streamed).
   Needs OPA (the regulator's token is authorised there): run ``healthgov stack up`` first.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from audit_common import events, percentile, scratch_database, table
from sqlalchemy import text

from services.adapters.auth import issue_token
from services.adapters.config import PlatformSettings
from services.adapters.keys import PlatformKeys
from services.audit import store
from services.audit.app import create_app
from services.audit.checkpoints import Checkpointer, CheckpointStore
from services.audit.config import AuditSettings
from services.audit.log import MerkleLog
from services.audit.signing import LogSigner
from services.tlog import merkle
from services.tlog.client import AuditClient
from services.tlog.verify import verify_log

BATCH = 10_000
CHECKPOINT_EVERY = 100_000


def build(url: str, n: int, seed_key: bytes) -> dict[str, float]:
    engine = store.connect(url)
    log, cps = MerkleLog(engine), CheckpointStore(engine)
    checkpointer = Checkpointer(log, cps, LogSigner(AuditSettings().log_origin, seed_key))
    append_s = 0.0
    started = time.perf_counter()
    for i in range(0, n, BATCH):
        bodies = events(min(BATCH, n - i), seed=i)
        t = time.perf_counter()
        log.append(bodies)
        append_s += time.perf_counter() - t
        if (i + BATCH) % CHECKPOINT_EVERY == 0 or i + BATCH >= n:
            checkpointer.checkpoint()
    total = time.perf_counter() - started
    assert log.size() == n
    engine.dispose()
    return {"append_rate": n / append_s, "with_checkpoints": n / total}


def _ms(samples: list[float]) -> str:
    return f"{percentile(samples, 50) * 1e3:.2f} / {percentile(samples, 99) * 1e3:.2f}"


def latencies(url: str, n: int, count: int) -> dict[str, str]:
    engine = store.connect(url)
    log = MerkleLog(engine)
    rnd = random.Random(1)
    root = log.root(n)
    samples: dict[str, list[float]] = {"pk": [], "inclusion": [], "consistency": [], "root": []}
    query = text("SELECT hash FROM audit_node WHERE level = 0 AND idx = :i")
    for _ in range(count):
        i = rnd.randrange(n)
        t = time.perf_counter()
        with engine.connect() as conn:
            conn.execute(query, {"i": i}).scalar_one()
        samples["pk"].append(time.perf_counter() - t)
        t = time.perf_counter()
        proof = log.inclusion_proof(i, n)
        samples["inclusion"].append(time.perf_counter() - t)
        merkle.verify_inclusion(log.leaf_hash(i), i, n, proof, root)
        old = rnd.randrange(1, n)
        t = time.perf_counter()
        cproof = log.consistency_proof(old, n)
        samples["consistency"].append(time.perf_counter() - t)
        merkle.verify_consistency(old, n, cproof, log.root(old), root)
        t = time.perf_counter()
        log.root(rnd.randrange(1, n + 1))
        samples["root"].append(time.perf_counter() - t)
    engine.dispose()
    return {k: _ms(v) for k, v in samples.items()}


def verify_over_http(owner_url: str, n: int, settings: PlatformSettings) -> float:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    audit = AuditSettings(database_url=owner_url, audit_database_url=None, audit_consume=False,
                          audit_db_role=f"hg_bench_{os.getpid()}")
    server = uvicorn.Server(uvicorn.Config(create_app(audit), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    private, _ = PlatformKeys(settings.state_dir).org_signer("gz-nhc")

    def token() -> str:
        return issue_token(org="gz-nhc", private_key=private, subject="bench", audience="audit", role="regulator",
                           purpose="HCOMPL")

    client = AuditClient(f"http://127.0.0.1:{port}", token=token, timeout_s=600)
    try:
        started = time.perf_counter()
        report = verify_log(client, client.verifier_key())
        elapsed = time.perf_counter() - started
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=30)
    assert report.ok and report.entries == n, report.problems
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--proofs", type=int, default=2000)
    ap.add_argument("--no-verify", action="store_true", help="skip the HTTP verification")
    args = ap.parse_args()
    settings = PlatformSettings()
    rows = []
    for kind in args.stores.split(","):
        with tempfile.TemporaryDirectory() as tmp, scratch_database(kind, Path(tmp)) as url:
            store.migrate(url)
            built = build(url, args.n, PlatformKeys(settings.state_dir).audit_log_signer()[0])
            lat = latencies(url, args.n, args.proofs)
            verified = None if args.no_verify else verify_over_http(url, args.n, settings)
            if kind == "postgresql":
                with store.connect(url).connect() as conn:
                    size = conn.execute(text("SELECT pg_size_pretty(pg_database_size(current_database()))")).scalar()
            else:
                size = f"{sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20:.0f} MB"
        rows.append((kind, f"{built['append_rate']:,.0f}", f"{built['with_checkpoints']:,.0f}", lat["pk"],
                     lat["inclusion"], lat["consistency"], lat["root"],
                     "-" if verified is None else f"{verified:.1f}", str(size)))
        print(f"{kind} done", flush=True)
    print(f"\nlog of {args.n:,} entries; latencies p50 / p99 in ms over {args.proofs} random requests")
    print(table(rows, ("store", "append ev/s", "+checkpoints ev/s", "raw PK select", "inclusion proof",
                       "consistency proof", "root", "verify all (s)", "db size")))


if __name__ == "__main__":
    main()

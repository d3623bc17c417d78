"""Analytic query latency on DuckDB over the encrypted store, beside a raw DuckDB scan of the same files.

    .venv/bin/python bench/analytics.py [--resources 5000000] [--queries 20] [--update 100000]

In one run, in a temporary directory:

1. **Store**: the Synthea fixtures (both sets, each resource once) flattened once (as the store
   does), then replicated with new pseudonyms, districts and dates shifted by
   whole weeks until ``--resources`` fact rows exist, written as encrypted
   Parquet partitioned by type and year exactly as ``AnalyticStore`` writes.
2. **Query**: a district-by-month count of people with a Condition, through
   the analytic path (``DuckDBEngine`` returning distinct (district, month,
   person), the sets built, disclosure control), ``--queries`` times with a
   fresh ledger each time; p50/p99.
3. **Raw scan**: ``SELECT district, month, count(DISTINCT person) ... GROUP BY``
   on DuckDB over the same decrypting dataset, as many times; p50/p99. The
   difference is what the sets and disclosure control cost.
4. **Update**: ``--update`` resources of new patients stored in a records
   vault (SQLite) and ``AnalyticStore.update`` timed (decrypt, flatten,
   rewrite), first into an empty store, then the same again after one more
   resource per patient (the incremental case).

The machine is shared and noisy: compare rows of the same run, not runs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.records.analytics import flatten
from services.records.analytics import query as q
from services.records.analytics.engines import DuckDBEngine, cells, dataset
from services.records.analytics.parquet import Cipher
from services.records.analytics.sdc import Control
from services.records.analytics.store import partitions

FIXTURES = Path(__file__).resolve().parents[1] / "deploy" / "demo" / "fixtures"
# The 100-patient set has no Conditions; the 10-patient set's 13 patients (also in the 100) have them.
SETS = ("synthea-100-patients", "synthea-10-patients")
DISTRICTS = ["Nanming", "Yunyan", "Huaxi", "Wudang", "Baiyun", "Guanshanhu", "Qingzhen", "Kaiyang", "Xifeng",
             "Xiuwen"]
QUERY = {"cohort": {"types": ["Condition"]}, "measure": {"by": ["district", "month"]}}


def fixture_rows() -> list[dict[str, Any]]:
    """The fixtures' fact rows, one patient at a time, as the store would hold them."""
    by_patient: dict[str, list[dict[str, Any]]] = defaultdict(list)
    patients: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    for path in (p for name in SETS for p in sorted((FIXTURES / name).glob("*.ndjson.gz"))):
        with gzip.open(path, "rt") as fh:
            for line in fh:
                res = json.loads(line)
                if (res["resourceType"], res["id"]) in seen:
                    continue  # a resource of a patient both sets hold
                seen.add((res["resourceType"], res["id"]))
                if res["resourceType"] == "Patient":
                    patients[res["id"]] = res
                ref = (res.get("subject") or res.get("patient") or {}).get("reference", "")
                if ref.startswith("Patient/") or ref.startswith("urn:uuid:"):
                    by_patient[ref.split("/")[-1].split(":")[-1]].append(res)
    out: list[dict[str, Any]] = []
    for n, (pid, resources) in enumerate(sorted(by_patient.items())):
        who = flatten.person_of(patients.get(pid), n, False)
        out.extend(flatten.rows(who, ((r, "gy-hosp-001") for r in resources)))
    return out


def build(root: Path, cipher: Cipher, target: int, seed: int = 7) -> int:
    """Replicate the fixture rows (new person, district, dates shifted by weeks) into encrypted partitions."""
    base = fixture_rows()
    rnd = random.Random(seed)
    written, copy = 0, 0
    while written < target:
        batch: list[dict[str, Any]] = []
        while len(batch) < 500_000 and written + len(batch) < target:
            copy += 1
            shift = rnd.randrange(-520, 52) * 7
            district = rnd.choice(DISTRICTS)
            for row in base:
                day = row["event_date"].fromordinal(row["event_date"].toordinal() + shift)
                iso = day.isocalendar()
                batch.append({**row, "person": copy * 1_000 + row["person"], "district": district,
                              "event_date": day, "period": f"{day.year:04d}", "month": f"{day:%Y-%m}",
                              "week": f"{iso.year:04d}-W{iso.week:02d}"})
        table = pa.Table.from_pylist(batch[: target - written], schema=flatten.SCHEMA)
        for directory, part in partitions(table):
            cipher.write(part, root / directory / f"part-{uuid.uuid4().hex}.parquet")
        written += table.num_rows
        print(f"  {written:,} rows written", file=sys.stderr)
    return written


class _Files:
    """Just enough of ``AnalyticStore`` for the engines: the files and their cipher."""

    def __init__(self, root: Path, cipher: Cipher) -> None:
        self.root, self.cipher = root, cipher

    def files(self, types: list[str] | None = None, years: tuple[int, int] | None = None) -> list[Path]:
        del years  # the bench's query has no period: every decade is read
        return sorted(p for p in self.root.glob("rtype=*/*/*.parquet")
                      if types is None or p.parent.parent.name.removeprefix("rtype=") in types)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered) * 1000:8.1f} ms   p99 {p99 * 1000:8.1f} ms   (n={len(ordered)})"


def bench_queries(files: _Files, n: int) -> tuple[list[float], list[float], int]:
    engine = DuckDBEngine(files)  # type: ignore[arg-type]
    query = q.parse(QUERY)
    text = q.sql(query, research=False)
    analytic: list[float] = []
    raw: list[float] = []
    released = 0
    for _ in range(n):
        started = time.perf_counter()
        groups, total = cells(engine.run(text, q.scope(query)), ["district", "month"])
        answer = Control().protect(["district", "month"], groups, total)
        analytic.append(time.perf_counter() - started)
        released = sum(1 for c in answer.cells if c.count is not None)
        started = time.perf_counter()
        con = duckdb.connect(config={"threads": 2})
        con.register("facts", dataset(files, q.scope(query)))  # type: ignore[arg-type]
        con.sql("SELECT district, month, count(DISTINCT person) FROM facts WHERE rtype IN ('Condition') "
                "GROUP BY district, month").to_arrow_table()
        con.close()
        raw.append(time.perf_counter() - started)
    return analytic, raw, released


def bench_update(tmp: Path, resources: int) -> tuple[float, float, int]:
    """Time ``AnalyticStore.update`` after ``resources`` new resources, then after one more per patient."""
    from tests.unit.records.analytics_support import Vaulted, condition, patient

    v = Vaulted(tmp)
    per_patient = 10
    ids = []
    for i in range(resources // per_patient):
        pid = f"bench-{i}"
        ids.append(pid)
        v.put(pid, patient(pid, district=DISTRICTS[i % len(DISTRICTS)]),
              *(condition(pid, "44054006", f"20{10 + k}-0{1 + k % 9}-15") for k in range(per_patient - 1)))
    started = time.perf_counter()
    first = v.store.update()
    cold = time.perf_counter() - started
    for pid in ids:
        v.put(pid, condition(pid, "38341003", "2024-05-05"))
    started = time.perf_counter()
    v.store.update()
    return cold, time.perf_counter() - started, first.rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--resources", type=int, default=5_000_000)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--update", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        cipher = Cipher(b"\x07" * 32)
        started = time.perf_counter()
        rows = build(root, cipher, args.resources)
        files = _Files(root, cipher)
        print(f"store: {rows:,} fact rows in {len(files.files())} encrypted files, "
              f"built in {time.perf_counter() - started:.1f} s")
        analytic, raw, released = bench_queries(files, args.queries)
        print(f"district x month, analytic path (sets + disclosure control): {percentiles(analytic)}; "
              f"{released} cells released")
        print(f"district x month, raw DuckDB count(DISTINCT) scan:          {percentiles(raw)}")
        if args.update:
            cold, warm, stored = bench_update(Path(tmp) / "vault", args.update)
            print(f"update after {args.update:,} resources stored: {cold:.1f} s into an empty store ({stored:,} rows); "
                  f"{warm:.1f} s after one new resource for each of their patients")


if __name__ == "__main__":
    main()

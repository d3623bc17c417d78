"""The disclosure ledger as it grows: release latency beside the raw read of the same rows, same run.

    .venv/bin/python bench/ledger.py [--store postgresql|sqlite] [--queries 2000] [--cells 60] [--people 50000]

Every analytic answer is released under the ledger's lock (``ReleaseLedger.release``): the
released sets whose size is within the threshold of the new cells' sizes are read, decrypted
and compared with the new cells, then the new sets are appended. The rows read grow with the
ledger, so this measures how release time grows with it. Needs the platform's PostgreSQL for
``--store postgresql`` (``HEALTHGOV_DATABASE_URL``; a scratch database, dropped afterwards).

Each query is a grouped answer of ``--cells`` cells (a district-by-month table, say) over a
population of ``--people`` keyed pseudonyms, cell sizes drawn from a long-tailed distribution
(most cells small, as district-by-month counts are); no two queries release the same sets.
Printed per block of queries: the ledger's size, release p50/p99, the rows each release read
(and decrypted), and beside it the raw ceiling: the same SELECT of sealed rows alone, without
decrypting or comparing, in the same run. The script also runs on a tree from before the token
index (it then passes sizes, and the raw SELECT is the one by size that tree made).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Select, or_, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_common import scratch_database

from services.records.analytics.ledger import Release, ReleasedSet, ReleaseLedger, released_sets, size_ranges
from services.records.analytics.sdc import Control, Key, Ledger, Members
from services.records.store import make_engine

THRESHOLD = 7
BY = ["district", "month"]


def a_query(rnd: random.Random, people: list[int], n_cells: int) -> tuple[dict[Key, Members], Members]:
    """``n_cells`` disjoint cells of long-tailed sizes (median ~15, some in the hundreds) and their union."""
    chosen = rnd.sample(people, k=min(len(people), sum(int(rnd.paretovariate(1.2) * 8) for _ in range(n_cells))))
    cells: dict[Key, Members] = {}
    at = 0
    for i in range(n_cells):
        size = max(1, int(rnd.paretovariate(1.2) * 8))
        cells[(f"d{i % 10}", f"m{i}")] = frozenset(chosen[at:at + size])
        at += size
    cells = {k: v for k, v in cells.items() if v}
    total = frozenset().union(*cells.values()) if cells else frozenset()
    return cells, total


def raw_select(ledger: ReleaseLedger, sets: list[Members]) -> Select[Any]:
    """The SELECT of sealed rows a release makes (``near_query``; by size on a tree before the index)."""
    if hasattr(ledger, "near_query"):
        return ledger.near_query(sets, THRESHOLD)  # type: ignore[no-any-return]
    col = ReleasedSet.size  # type: ignore[var-annotated]
    by_size = or_(*(col.between(lo, hi) for lo, hi in size_ranges((len(m) for m in sets), THRESHOLD)))
    return select(ReleasedSet.digest, ReleasedSet.members).where(by_size)  # type: ignore[call-overload,no-any-return]


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--cells", type=int, default=60)
    ap.add_argument("--people", type=int, default=50_000)
    ap.add_argument("--blocks", type=int, default=5, help="report this many times as the ledger grows")
    args = ap.parse_args()
    rnd = random.Random(11)
    people = rnd.sample(range(1, 2**62), k=args.people)
    control = Control()
    with tempfile.TemporaryDirectory() as tmp, scratch_database(args.store, Path(tmp)) as url:
        engine = make_engine(url)
        ledger = ReleaseLedger(engine, b"\x05" * 32)
        per_block = max(1, args.queries // args.blocks)
        print(f"{'ledger sets':>12} {'release p50':>12} {'p99':>9} {'rows read p50':>14} "
              f"{'raw select p50':>15} {'p99':>9}")
        released_cells = 0
        for block in range(args.blocks):
            times, reads, raws = [], [], []
            for i in range(per_block):
                cells, total = a_query(rnd, people, args.cells)
                sets = [*cells.values(), total]
                sizes = [len(m) for m in sets]

                def answer(near: Ledger, _budget: object, cells: dict[Key, Members] = cells,
                           total: Members = total, reads: list[int] = reads) -> Release:
                    released = control.protect(BY, cells, total, near)
                    reads.append(len(near))
                    return Release(orjson.dumps(released.as_json()), released_sets(released, cells, total))

                started = time.perf_counter()
                body, _ = ledger.release(f"k{block}-{i}", "v1", f"q{block}-{i}",
                                         sets if hasattr(ledger, "tokens") else sizes,  # a tree before the index
                                         THRESHOLD, answer)
                times.append(time.perf_counter() - started)
                released_cells += sum(1 for row in orjson.loads(body)["rows"] if row.get("count") is not None)
                started = time.perf_counter()
                with engine.connect() as conn:
                    conn.execute(raw_select(ledger, sets)).all()
                raws.append(time.perf_counter() - started)
            print(f"{len(ledger):>12,} {p(times, .5) * 1e3:>9.1f} ms {p(times, .99) * 1e3:>6.1f} ms "
                  f"{statistics.median(reads):>14,.0f} {p(raws, .5) * 1e3:>12.1f} ms {p(raws, .99) * 1e3:>6.1f} ms",
                  flush=True)
        print(f"{args.queries:,} answers of {args.cells} cells, {released_cells:,} cells released, "
              f"threshold {THRESHOLD}")
        engine.dispose()


if __name__ == "__main__":
    main()

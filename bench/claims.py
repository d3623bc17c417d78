"""What owned records and registered patients cost per resource: the claims ingest settles before it seals.

    HEALTHGOV_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/claims.py [--rounds 4]

Ingest refuses a resource another hospital owns, or one about a patient the hospital never registered
(services/ingest/claims.py). That costs three things per resource, measured here apart from everything
else so that the number is not lost in the noise of a whole-platform run on a shared machine:

1. ``claims_of`` in the validation worker (keyed digests of the resource id and any national identifier);
2. ``ClaimRegistry.settle`` in the ingest process (look-ups and the claim insert, one transaction a chunk);
3. PostgreSQL's backends running those statements (CPU of the postmaster's process tree, from /proc).

Each round is one Synthea-sized population copy (bench/population.py, 18,644 resources under fresh ids) in
chunks of 1,000 lines, Patients first, as ``healthgov ingest`` sends them. Needs only PostgreSQL
(``deploy/postgres.sh start``; HEALTHGOV_PG_PORT says which cluster's CPU to read).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import orjson
from cpu import _postmaster, _tree_cpu_s
from population import population

from services.ingest.claims import ClaimRegistry
from services.ingest.prepare import Context, claims_of
from services.ingest.store import make_engine

SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.156.10011.1.5"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=1000)
    args = parser.parse_args()
    registry = ClaimRegistry(make_engine(os.environ["HEALTHGOV_DATABASE_URL"]))
    postmaster = _postmaster(os.environ.get("HEALTHGOV_PG_PORT", "55432"))
    if postmaster is None:
        raise SystemExit("PostgreSQL's postmaster was not found (deploy/postgres.sh start, HEALTHGOV_PG_PORT)")
    ctx = Context(records_public_key=b"", pseudonym_key=os.urandom(32), labels_file="", strong_systems=SYSTEMS)
    rows: list[tuple[float, float, float]] = []
    for rnd in range(args.rounds):
        pop = population(1)
        docs = [orjson.loads(line) for rtype in ["Patient", *sorted(set(pop) - {"Patient"})]
                for line in pop[rtype] if line.strip()]
        n = len(docs)
        t0 = time.process_time()
        chunks = [claims_of(ctx, list(enumerate(docs[i:i + args.chunk], start=i)))
                  for i in range(0, n, args.chunk)]
        t1, pg0 = time.process_time(), _tree_cpu_s(postmaster)
        refused = sum(len(registry.settle("gy-hosp-001", chunk).reasons) for chunk in chunks)
        t2, pg1 = time.process_time(), _tree_cpu_s(postmaster)
        if refused:
            raise SystemExit(f"round {rnd}: {refused} claims refused; every resource here is new and registered")
        row = ((t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6, (pg1 - pg0) / n * 1e6)
        rows.append(row)
        print(f"round {rnd}: {n} resources; CPU us per resource: claims_of {row[0]:.1f}, "
              f"settle (ingest) {row[1]:.1f}, postgresql {row[2]:.1f}, total {sum(row):.1f}")
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"median of {len(rows)} rounds, CPU us per resource: claims_of {med[0]:.1f}, settle {med[1]:.1f}, "
          f"postgresql {med[2]:.1f}, total {sum(med):.1f}")


if __name__ == "__main__":
    main()

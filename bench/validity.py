"""CPU cost per resource of the specification's rules and of the quality report, outside the platform.

    .venv/bin/python bench/validity.py [--rounds 3] [--only rules|report|struct|prepare] [--copies 1]

Runs over the shipped 10-patient Synthea set (7,160 resources) in this
process: ``RuleSet.check`` (bindings and invariants; its memo cleared before
each round, as fresh data would find it), ``Tally.observe`` (the quality
report's counting), ``validate_resource`` (structure and types) and
``prepare``: the whole of a validation worker's work, ``prepare_lines`` over
the NDJSON lines in chunks of 1,000 (parse, every check, references, labels,
the report, sealing), the rules' memo cleared before each round. Prints the
CPU µs per resource of each, best of ``--rounds``.

The machine is shared, so times move with its load. Instruction counts do
not: ``--once`` runs ``--rounds`` rounds of ``--only``, prints nothing and exits, for

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg1.out .venv/bin/python bench/validity.py \
        --once --rounds 1 --only prepare
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg2.out .venv/bin/python bench/validity.py \
        --once --rounds 2 --only prepare

The second count minus the first is one warm round (interpreter start, loading
the data and the tables, and what the first round imports lazily cancel out);
divide by the resources (7,160).
"""

from __future__ import annotations

import argparse
import gzip
import time
from collections.abc import Callable
from typing import Any

import orjson

from services.adapters.config import REPO_ROOT
from services.fhir.rules import rules
from services.fhir.validation import validate_resource
from services.ingest.report import Tally

TEN = REPO_ROOT / "deploy" / "demo" / "fixtures" / "synthea-10-patients"


def lines(copies: int) -> list[bytes]:
    """The fixture's NDJSON lines, ``copies`` times."""
    return [line for path in sorted(TEN.glob("*.ndjson.gz"))
            for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()] * copies


def resources(copies: int) -> list[dict[str, Any]]:
    """The fixture resources, ``copies`` times (the same content: the rules' memo is cleared between rounds)."""
    return [orjson.loads(line) for line in lines(copies)]


def parts(docs: list[dict[str, Any]], raw: list[bytes]) -> dict[str, Callable[[], None]]:
    from services.adapters import crypto
    from services.ingest.labels import DEFAULT_TABLE
    from services.ingest.prepare import Context, prepare_lines

    ruleset = rules()
    ctx = Context(records_public_key=crypto.hpke_generate()[1], pseudonym_key=b"p" * 32,
                  labels_file=str(DEFAULT_TABLE))

    def check() -> None:
        ruleset._memo.clear()
        for doc in docs:
            ruleset.check(doc)

    def observe() -> None:
        tally = Tally()
        for doc in docs:
            tally.observe(doc, warnings=())

    def struct() -> None:
        for doc in docs:
            validate_resource(doc, "Resource")

    def prepare() -> None:
        ruleset._memo.clear()
        for i in range(0, len(raw), 1000):
            prepare_lines(ctx, "bench-hospital", "bench", i + 1, raw[i:i + 1000])

    return {"rules": check, "report": observe, "struct": struct, "prepare": prepare, "none": lambda: None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--only", choices=["rules", "report", "struct", "prepare", "none"])
    ap.add_argument("--once", action="store_true", help="--rounds rounds of --only, nothing printed (for callgrind)")
    args = ap.parse_args()
    raw = lines(args.copies)
    docs = [orjson.loads(line) for line in raw]
    todo = parts(docs, raw)
    if args.once:
        for _ in range(args.rounds):
            todo[args.only or "none"]()
        return
    print(f"{len(docs)} resources, CPU µs per resource, best of {args.rounds} rounds")
    for name in [args.only] if args.only else ["rules", "report", "struct", "prepare"]:
        fn = todo[name]
        fn()  # warm: the rule table is loaded and compiled on first use
        times = []
        for _ in range(args.rounds):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        per = [t / len(docs) * 1e6 for t in times]
        print(f"  {name:7s} {min(per):7.1f} µs (rounds {', '.join(f'{p:.1f}' for p in per)})")


if __name__ == "__main__":
    main()

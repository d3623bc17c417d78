"""Process-wide settings every long-running healthgov process applies once it has started."""

from __future__ import annotations

import gc

GC_YOUNG_THRESHOLD = 50_000


def freeze_startup_heap() -> None:
    """Move everything built at start-up out of the garbage collector's sight.

    A service's imports and tables (the FHIR rule and structure tables are a
    large object graph) make a full collection take tens of milliseconds, during which no
    request advances: that pause is what a p99 latency sees. What exists at
    start-up lives for the process's lifetime anyway; ``gc.freeze`` keeps the
    collector to objects made by requests. The first generation is also made
    larger: parsing one ingest message or response allocates tens of thousands
    of objects, and at the default threshold (700) the collector would run
    dozens of times inside every parse.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])

"""The worker-process pool that runs ingest's CPU-bound work on every core.

Validation, references, labels and sealing (``prepare.py``) are pure CPU: the
pool (spawned processes, so no thread state is forked) runs the chunks of bulk
requests in parallel. Each worker loads the specification's tables (structure,
bindings, invariants) once, before its first request.

Validation once went through the fhir.resources models, and a memo of their
nested elements lived here; ``services/fhir/structure.py`` replaced both.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from services.adapters import telemetry
from services.adapters.runtime import freeze_startup_heap

log = logging.getLogger(__name__)

T = TypeVar("T")


PARENT_CHECK_S = 1.0


def _exit_with_parent(parent: int) -> None:
    """End this worker once the ingest process that made it is gone.

    A worker blocks on its task queue and does not notice its parent's death
    by itself: after a kill -9 of ingest the workers would run on, orphaned,
    holding memory that nothing frees (``stack down`` knows only ingest's pid).
    """
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _init_worker(parent: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()
    from services.fhir.rules import rules
    from services.fhir.structure import structure

    structure()  # load the structure table once per worker, before the first request
    rules()  # and compile the specification's rules

    # The tables and compiled rules are a large, permanent object graph: out of the collector's
    # sight, a full collection no longer walks them.
    freeze_startup_heap()


def _warm() -> int:
    return 1


class Pool:
    """A process pool for CPU-bound ingest work, or in-line execution when workers=0."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        telemetry.POOL_WORKERS.set(workers)
        if workers > 0:
            self._executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(os.getpid(),))

    def warm_up(self) -> None:
        """Start every worker now (loading the tables takes a moment), not on the first request."""
        if self._executor is not None:
            for f in [self._executor.submit(_warm) for _ in range(self.workers)]:
                f.result()

    def map_ordered(self, fn: Callable[..., T], jobs: Iterable[tuple[Any, ...]], inline: bool = False) -> Iterator[T]:
        """``fn(*job)`` for each job, yielded in order as they finish; the pool keeps every core busy.

        ``jobs`` is consumed lazily, a few ahead of the results taken: a
        generator of jobs keeps only that window in memory.
        """
        if self._executor is None or inline:
            for job in jobs:
                yield fn(*job)
            return
        window = max(2, 2 * self.workers)
        futures: list[Future[T]] = []
        it = iter(jobs)
        submit = self._submit
        for job in it:
            futures.append(submit(fn, job))
            if len(futures) >= window:
                break
        done = 0
        try:
            while done < len(futures):
                start = time.perf_counter()
                result = futures[done].result()
                telemetry.POOL_WAIT.observe(time.perf_counter() - start)
                telemetry.POOL_IN_FLIGHT.dec()
                futures[done] = None  # type: ignore[call-overload]  # release the result
                done += 1
                nxt = next(it, None)
                if nxt is not None:
                    futures.append(submit(fn, nxt))
                yield result
        finally:
            telemetry.POOL_IN_FLIGHT.dec(len(futures) - done)  # abandoned or failed: no longer in flight

    def _submit(self, fn: Callable[..., T], job: tuple[Any, ...]) -> Future[T]:
        assert self._executor is not None
        future = self._executor.submit(fn, *job)
        telemetry.POOL_TASKS.inc()
        telemetry.POOL_IN_FLIGHT.inc()
        return future

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

"""Fast FHIR validation: a memo of repeated data types and a worker-process pool.

Profiling showed fhir.resources validation is the ingest bottleneck (~2-4k
resources/s on one core): fhir_core validates every nested complex element
(each Coding, CodeableConcept, Reference, Period...) through a Python-level
``model_validate``. Real hospital data repeats those elements endlessly (the
same LOINC code, the same practitioner reference), and the validity of a
complex element depends only on its own content. So we memoise *successful*
nested validations, keyed by the element's model class and its JSON bytes:
the library still validates every distinct element and every resource, and a
failure is never cached, so the errors are exactly the library's (the unit
tests check this equivalence over every fixture and a set of broken ones).

The memo patches one classmethod of fhir_core; if a future fhir_core renames
it, ``install_memo`` does nothing and validation is merely slower.

The memo's memory is bounded. Each entry holds a validated model, about 5 kB
of Python objects, and a population load keeps bringing new elements (every
patient's references are new): with a memo cleared only at 200,000 entries
each worker grew to about 1.5 GB. Now the memo keeps two generations of at
most ``MEMO_GENERATION`` entries: when the young one fills, the old one is
dropped and the young one becomes old; a hit in the old generation moves the
entry to the young one. Elements that repeat (codes, the hospital's own
practitioners) survive every turn, one-off ones leave after two, and a worker
holds at most ``2 * MEMO_GENERATION`` entries. Elements whose JSON exceeds
``MEMO_MAX_ELEMENT_BYTES`` are never memoised: they rarely repeat (an
attachment's data, a Provenance's target list) and would cost most.

The pool (spawned processes, so no thread state is forked) runs the CPU-bound
work of bulk requests in parallel on every core.
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

import orjson

from services.adapters import telemetry
from services.adapters.runtime import freeze_startup_heap

log = logging.getLogger(__name__)

MEMO_GENERATION = 15_000  # entries per generation: two generations take about 150 MB
MEMO_MAX_ELEMENT_BYTES = 4096
_MemoKey = tuple[type, bytes]


class _Memo:
    """Two generations of validated elements: repeated ones stay, the rest age out (bounded size)."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.young: dict[_MemoKey, Any] = {}
        self.old: dict[_MemoKey, Any] = {}

    def get(self, key: _MemoKey) -> Any:
        hit = self.young.get(key)
        if hit is None:
            hit = self.old.pop(key, None)
            if hit is not None:
                self.put(key, hit)
        return hit

    def put(self, key: _MemoKey, value: Any) -> None:
        if len(self.young) >= self.generation:
            self.old, self.young = self.young, {}
        self.young[key] = value

    def clear(self) -> None:
        self.young.clear()
        self.old.clear()

    def __len__(self) -> int:
        return len(self.young) + len(self.old)


_memo = _Memo(MEMO_GENERATION)
_original: Any = None

T = TypeVar("T")


def install_memo() -> bool:
    """Memoise fhir_core's nested-element validation in this process; True if active."""
    global _original
    try:
        from fhir_core.types import FhirBase
    except ImportError:  # pragma: no cover - fhir_core layout changed
        return False
    if _original is not None:
        return True
    original = getattr(FhirBase, "fhir_model_validator", None)
    func = getattr(original, "__func__", None)
    if func is None:  # pragma: no cover - fhir_core layout changed
        log.warning("fhir_core has no fhir_model_validator classmethod; validation memo disabled")
        return False

    def memoised(cls: Any, value: Any, model_klass: type) -> Any:
        if not isinstance(value, dict):
            return func(cls, value, model_klass)
        raw = orjson.dumps(value)  # equal bytes => equal content; a miss only costs time
        if len(raw) > MEMO_MAX_ELEMENT_BYTES:
            return func(cls, value, model_klass)
        key = (model_klass, raw)
        hit = _memo.get(key)
        if hit is not None:
            return hit
        result = func(cls, value, model_klass)  # raises on invalid input: never cached
        _memo.put(key, result)
        return result

    _original = original
    FhirBase.fhir_model_validator = classmethod(memoised)  # type: ignore[method-assign,assignment]
    return True


def uninstall_memo() -> None:
    """Restore fhir_core's own validator (tests compare both)."""
    global _original
    if _original is None:
        return
    from fhir_core.types import FhirBase

    FhirBase.fhir_model_validator = _original  # type: ignore[method-assign]
    _original = None
    _memo.clear()


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


def _init_worker(memo: bool, parent: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()
    if memo:
        install_memo()
    import fhir.resources.R4B  # noqa: F401 - load the models once per worker

    from services.fhir.rules import rules

    rules()  # load and compile the specification's rules once per worker, before the first request

    # The models are a large, permanent object graph: out of the collector's sight, a full
    # collection no longer walks them (about a sixth of a worker's CPU when it did).
    freeze_startup_heap()


def _warm() -> int:
    return 1


class Pool:
    """A process pool for CPU-bound ingest work, or in-line execution when workers=0."""

    def __init__(self, workers: int, memo: bool) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        if memo:
            install_memo()
        telemetry.POOL_WORKERS.set(workers)
        if workers > 0:
            self._executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(memo, os.getpid()))

    def warm_up(self) -> None:
        """Start every worker now (model import takes a second), not on the first request."""
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

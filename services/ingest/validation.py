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

The pool (spawned processes, so no thread state is forked) runs the CPU-bound
work of bulk requests in parallel on every core.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

import orjson

from services.adapters.runtime import freeze_startup_heap

log = logging.getLogger(__name__)

MEMO_MAX = 200_000
_memo: dict[tuple[type, bytes], Any] = {}
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
        key = (model_klass, orjson.dumps(value))  # equal bytes => equal content; a miss only costs time
        hit = _memo.get(key)
        if hit is not None:
            return hit
        result = func(cls, value, model_klass)  # raises on invalid input: never cached
        if len(_memo) >= MEMO_MAX:
            _memo.clear()
        _memo[key] = result
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


def _init_worker(memo: bool) -> None:
    if memo:
        install_memo()
    import fhir.resources.R4B  # noqa: F401 - load the models once per worker

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
        if workers > 0:
            self._executor = ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(memo,))

    def warm_up(self) -> None:
        """Start every worker now (model import takes a second), not on the first request."""
        if self._executor is not None:
            for f in [self._executor.submit(_warm) for _ in range(self.workers)]:
                f.result()

    def map_ordered(self, fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]], inline: bool = False) -> Iterator[T]:
        """``fn(*job)`` for each job, yielded in order as they finish; the pool keeps every core busy."""
        if self._executor is None or inline or len(jobs) == 0:
            for job in jobs:
                yield fn(*job)
            return
        window = max(2, 2 * self.workers)
        futures: list[Future[T]] = []
        it = iter(jobs)
        for job in it:
            futures.append(self._executor.submit(fn, *job))
            if len(futures) >= window:
                break
        done = 0
        while done < len(futures):
            result = futures[done].result()
            futures[done] = None  # type: ignore[call-overload]  # release the result
            done += 1
            nxt = next(it, None)
            if nxt is not None:
                futures.append(self._executor.submit(fn, *nxt))
            yield result

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

"""The disclosure ledger and answer cache in records' database: shared by processes, kept across restarts.

Each ``ReleaseLedger`` here stands for one records process (its own engine on
the same database): what one released, another (or the next one after a
restart) must still see.
"""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from sqlalchemy import select, text

from services.adapters.crypto import DecryptionError
from services.records.analytics.ledger import Release, ReleasedSet, ReleaseLedger, Spend, released_sets
from services.records.analytics.privacy import Budget, BudgetSpent, Terms
from services.records.analytics.sdc import Control, Key, Ledger, Members
from tests.integration.records.conftest import Db

MASTER = b"m" * 32
WHOLE = frozenset(range(1, 15))  # 14 people
WITHOUT_TWO = frozenset(range(1, 13))  # the same but 2: their difference must never be released


def answer(total: Members, delay: float = 0.0):  # type: ignore[no-untyped-def]
    """The release callback records uses: disclosure control of a one-total answer against the ledger given."""
    def run(near: Ledger, _budget: Budget | None) -> Release:
        time.sleep(delay)  # a slow answer widens the window two unlocked processes would both slip through
        groups: dict[Key, Members] = {}
        released = Control().protect([], groups, total, near)
        return Release(orjson.dumps(released.as_json()), released_sets(released, groups, total))
    return run


def release(ledger: ReleaseLedger, key: str, total: Members, delay: float = 0.0) -> tuple[dict, bool]:  # type: ignore[type-arg]
    body, cached = ledger.release(key, "v1", "q-" + key, [total], 7, answer(total, delay))
    return orjson.loads(body), cached


def test_a_second_process_remembers_what_the_first_released(db: Db) -> None:
    first, second = db.engine(), db.engine()
    try:
        whole, _ = release(ReleaseLedger(first, MASTER), "whole", WHOLE)
        assert whole["total"] == {"count": 15, "suppressed": None}
        # A restarted (or another) process: new engine, new ledger object, same database.
        part, cached = release(ReleaseLedger(second, MASTER), "without", WITHOUT_TWO)
        assert not cached
        assert part["total"] == {"count": None, "suppressed": "overlaps_released_answer"}
    finally:
        first.dispose()
        second.dispose()


def test_the_same_question_gets_the_same_bytes_from_any_process(db: Db) -> None:
    first, second = db.engine(), db.engine()
    try:
        body, cached = ReleaseLedger(first, MASTER).release("k", "v1", "q", [WHOLE], 7, answer(WHOLE))
        assert not cached
        assert ReleaseLedger(second, MASTER).cached("k") == body
        other = frozenset(range(40))
        again, cached = ReleaseLedger(second, MASTER).release("k", "v1", "q", [other], 7, answer(other))
        assert cached and again == body
    finally:
        first.dispose()
        second.dispose()


def test_the_database_holds_no_pseudonym_in_the_clear(db: Db) -> None:
    engine = db.engine()
    try:
        members = frozenset(range(10**12, 10**12 + 14))
        release(ReleaseLedger(engine, MASTER), "k", members)
        with engine.connect() as conn:
            (sealed,) = conn.execute(select(ReleasedSet.members)).one()  # type: ignore[call-overload]
            raw = conn.execute(text("SELECT * FROM records_sdc_released")).one()
        for m in members:
            assert m.to_bytes(8, "big") not in sealed and str(m) not in repr(raw)
        # Under another deployment's key the row does not open.
        with pytest.raises(DecryptionError):
            ReleaseLedger(engine, b"x" * 32).release("k2", "v1", "q", [members], 7, answer(members))
    finally:
        engine.dispose()


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # one process serves SQLite: the lock is PostgreSQL's
def test_two_processes_at_once_cannot_release_both_halves_of_a_difference(db: Db) -> None:
    engines = [db.engine(), db.engine()]
    results: list[dict] = []  # type: ignore[type-arg]
    try:
        threads = [threading.Thread(target=lambda e=e, k=k, s=s: results.append(
                       release(ReleaseLedger(e, MASTER), k, s, delay=0.5)[0]))
                   for e, k, s in ((engines[0], "whole", WHOLE), (engines[1], "without", WITHOUT_TWO))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        released = [r["total"]["count"] for r in results if r["total"]["count"] is not None]
        assert len(results) == 2 and len(released) == 1, results
    finally:
        for e in engines:
            e.dispose()


def test_a_privacy_budget_is_spent_once_per_new_answer_across_processes(db: Db) -> None:
    first, second = db.engine(), db.engine()
    spend = Spend("prj-1", Terms(budget=200_000, per_query=100_000))  # two answers of epsilon 0.1
    seen: list[Budget | None] = []

    def noised(_near: Ledger, budget: Budget | None) -> Release:
        seen.append(budget)
        return Release(b"noisy", [])

    try:
        assert ReleaseLedger(first, MASTER).release("a", "v1", "qa", [], 7, noised, spend) == (b"noisy", False)
        assert ReleaseLedger(second, MASTER).release("a", "v1", "qa", [], 7, noised, spend) == (b"noisy", True)
        ReleaseLedger(second, MASTER).release("b", "v1", "qb", [], 7, noised, spend)
        with pytest.raises(BudgetSpent) as refused:
            ReleaseLedger(first, MASTER).release("c", "v1", "qc", [], 7, noised, spend)
        assert (refused.value.budget.spent, refused.value.budget.total) == (200_000, 200_000)
        assert seen == [Budget(200_000, 100_000), Budget(200_000, 200_000)]  # the repeat spent nothing
        other = Spend("prj-2", spend.terms)  # another project's budget is its own
        assert ReleaseLedger(first, MASTER).release("c", "v1", "qc", [], 7, noised, other)[1] is False
    finally:
        first.dispose()
        second.dispose()


def test_the_token_index_finds_every_set_a_new_one_differs_from_by_few(db: Db) -> None:
    """The worst cases for the index, where the first shared person is as far back as it can be.

    A new set made of a released one with its first people by token order taken out, or with
    newcomers added who come before all of it, or both (7 changes at most): with 7 newcomers
    in front, the first shared person is 8th, and an index looking at only 7 tokens of the
    new set would miss the released one and release the difference.
    """
    import random

    engine = db.engine()
    try:
        ledger = ReleaseLedger(engine, MASTER)
        rnd = random.Random(3)
        released = []
        for i in range(60):  # a ledger of many sets of nearby sizes, so a miss would matter
            members = frozenset(rnd.sample(range(1, 10**9), k=rnd.randrange(16, 40)))
            body, _ = release(ledger, f"r{i}", members)
            if body["total"]["count"] is not None:
                released.append(members)
        assert len(released) > 40
        for i, members in enumerate(released[:35]):
            removed, added = i % 8, 7 - i % 8  # every split of 7 changes, from 0 + 7 to 7 + 0
            ordered = sorted(members)  # the index's order: the keyed pseudonyms' own
            ahead = rnd.sample(range(0, ordered[0]), k=added)  # newcomers before every member
            derived = frozenset(ordered[removed:]) | frozenset(ahead)
            assert len(derived ^ members) == 7
            body, _ = release(ReleaseLedger(engine, MASTER), f"d{i}", derived)
            assert body["total"] == {"count": None, "suppressed": "overlaps_released_answer"}, (removed, added)
        far = frozenset(rnd.sample(range(3 * 10**9, 4 * 10**9), k=20))
        assert release(ledger, "far", far)[0]["total"]["count"] == 20
    finally:
        engine.dispose()


def test_sets_released_before_the_index_are_indexed_by_the_next_release(db: Db) -> None:
    engine = db.engine()
    try:
        release(ReleaseLedger(engine, MASTER), "whole", WHOLE)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM records_sdc_token"))  # as a ledger from before the index
        part, _ = release(ReleaseLedger(engine, MASTER), "without", WITHOUT_TWO)
        assert part["total"] == {"count": None, "suppressed": "overlaps_released_answer"}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM records_sdc_token")).scalar() == len(WHOLE)
    finally:
        engine.dispose()

"""Disclosure control on known tables: suppression, rounding, complementary suppression, differencing."""

from __future__ import annotations

from services.records.analytics.sdc import OVERLAP, PRIMARY, SECONDARY, Control, Settings, round_to


def people(start: int, n: int) -> frozenset[int]:
    return frozenset(range(start, start + n))


def table(*sizes: int, start: int = 0) -> dict[tuple[str, ...], frozenset[int]]:
    """One-dimensional cells a, b, c, ... of disjoint people, of the given sizes."""
    out, at = {}, start
    for i, n in enumerate(sizes):
        out[(chr(ord("a") + i),)] = people(at, n)
        at += n
    return out


def total_of(cells: dict[tuple[str, ...], frozenset[int]]) -> frozenset[int]:
    return frozenset().union(*cells.values())


def by_key(released) -> dict[str, tuple[int | None, str | None]]:  # type: ignore[no-untyped-def]
    return {c.key[0]: (c.count, c.suppressed) for c in released.cells}


def test_rounding_is_to_the_nearest_five() -> None:
    assert [round_to(n, 5) for n in (8, 10, 12, 13, 17, 18, 102)] == [10, 10, 10, 15, 15, 20, 100]


def test_small_counts_suppressed_and_the_rest_rounded() -> None:
    cells = table(40, 12, 30, 9)
    out = Control().protect(["district"], cells, total_of(cells))
    assert by_key(out) == {"a": (40, None), "b": (10, None), "c": (30, None), "d": (10, None)}
    assert out.total.count == 90  # 91 rounded


def test_the_threshold_itself_is_suppressed_and_configurable() -> None:
    cells = table(7, 8, 40, 40)
    out = Control().protect(["district"], cells, total_of(cells))
    assert by_key(out)["a"] == (None, PRIMARY)
    assert by_key(out)["b"][1] == SECONDARY  # a lone suppressed cell takes the next smallest with it
    strict = Control(Settings(threshold=10)).protect(["district"], table(7, 8, 40, 40), total_of(cells))
    assert by_key(strict)["a"] == (None, PRIMARY) and by_key(strict)["b"] == (None, PRIMARY)


def test_a_lone_suppressed_cell_cannot_be_recovered_from_the_total() -> None:
    cells = table(40, 3, 30)
    out = Control().protect(["district"], cells, total_of(cells))
    released = by_key(out)
    assert released["b"] == (None, PRIMARY)
    assert released["c"] == (None, SECONDARY)  # otherwise total - 40 - 30 gives b away
    assert released["a"] == (40, None) and out.total.count == 75


def test_suppressed_cells_summing_to_a_small_count_take_another_with_them() -> None:
    cells = table(50, 2, 3, 20)
    released = by_key(Control().protect(["district"], cells, total_of(cells)))
    # b and c together are 5: the total minus a and d would say so
    assert released["b"][1] == PRIMARY and released["c"][1] == PRIMARY
    assert released["d"] == (None, SECONDARY)
    assert released["a"] == (50, None)


def test_a_table_whose_suppression_cannot_be_hidden_withholds_its_total() -> None:
    cells = table(3, 30)
    out = Control().protect(["district"], cells, total_of(cells))
    assert all(c.count is None for c in out.cells)
    assert out.total.count == 35  # two withheld cells of 33 people: nothing recoverable
    lone = table(3)
    single = Control().protect(["district"], lone, total_of(lone))
    assert single.total.count is None and single.total.suppressed == PRIMARY


def test_two_dimensional_slices_are_protected_along_both_dimensions() -> None:
    months = ["2024-01", "2024-02"]
    districts = ["n", "s", "w"]
    sizes = {("2024-01", "n"): 40, ("2024-01", "s"): 4, ("2024-01", "w"): 30,
             ("2024-02", "n"): 35, ("2024-02", "s"): 25, ("2024-02", "w"): 50}
    at, cells = 0, {}
    for m in months:
        for d in districts:
            cells[(m, d)] = people(at, sizes[(m, d)])
            at += sizes[(m, d)]
    out = Control().protect(["month", "district"], cells, total_of(cells))
    hidden = {c.key for c in out.cells if c.count is None}
    assert ("2024-01", "s") in hidden
    for m in months:  # every month with a hidden cell hides at least two
        in_month = [k for k in hidden if k[0] == m]
        assert len(in_month) != 1
    for d in districts:  # and so does every district
        in_district = [k for k in hidden if k[1] == d]
        assert len(in_district) != 1


def test_differencing_attack_with_two_overlapping_queries_fails() -> None:
    """"District D" (50 people) then "district D without code X" (47): the 3 with X are never revealed."""
    control = Control()
    district = people(1000, 50)
    first = control.protect([], {}, district)
    assert first.total.count == 50
    without_x = frozenset(sorted(district)[3:])
    second = control.protect([], {}, without_x)
    assert second.total.count is None and second.total.suppressed == OVERLAP
    # asked the other way round too: a cohort that adds 5 people to a released one
    wider = district | people(5000, 5)
    assert control.protect([], {}, wider).total.suppressed == OVERLAP


def test_differencing_through_cells_of_a_later_query_fails() -> None:
    control = Control()
    cells = table(40, 30, start=0)
    control.protect(["district"], cells, total_of(cells))
    shifted = {("a",): frozenset(list(cells[("a",)])[2:]), ("b",): cells[("b",)]}  # a minus 2 people
    out = by_key(control.protect(["district"], shifted, total_of(shifted)))
    assert out["a"] == (None, OVERLAP)
    assert out["b"] == (None, SECONDARY)


def test_the_same_sets_again_are_released_again() -> None:
    control = Control()
    cells = table(40, 30)
    first = control.protect(["district"], cells, total_of(cells))
    again = control.protect(["district"], dict(cells), total_of(cells))
    assert first.as_json() == again.as_json()


def test_disjoint_answers_do_not_interfere() -> None:
    control = Control()
    control.protect([], {}, people(0, 50))
    assert control.protect([], {}, people(100, 48)).total.count == 50


def test_released_json_holds_no_raw_counts_or_people() -> None:
    cells = table(41, 3, 30)
    body = Control().protect(["district"], cells, total_of(cells)).as_json()
    assert body["rows"][1] == {"district": "b", "count": None, "suppressed": PRIMARY}
    assert 41 not in [r["count"] for r in body["rows"]]
    assert "members" not in str(body)


def test_the_ledger_reads_only_sets_of_nearby_size() -> None:
    from services.records.analytics.ledger import pack, size_ranges, unpack

    assert size_ranges([], 7) == []
    assert size_ranges([3], 7) == [(0, 10)]
    assert size_ranges([40, 50, 100], 7) == [(33, 57), (93, 107)]  # 47..57 and 43..57 merge
    members = frozenset({1, 2**62 + 5, 123456789})
    assert unpack(pack(members)) == members


def test_the_ledger_finds_every_set_within_the_threshold_as_a_full_scan_would() -> None:
    """The index by each set's first people against the brute-force answer, worst cases included.

    Worst case: a released set's first people taken out, or newcomers before all of it, up to 7
    changes in all; with 7 newcomers in front the first shared person is 8th of the new set.
    """
    import random

    from services.records.analytics.sdc import Ledger

    rnd = random.Random(5)
    released = [frozenset(rnd.sample(range(10**6, 10**7), k=rnd.randrange(8, 60))) for _ in range(300)]
    ledger = Ledger()
    ledger.add(released)
    probes = []
    for i, base in enumerate(released[:120]):
        ordered = sorted(base)
        removed = i % 8
        ahead = frozenset(rnd.sample(range(0, 10**6), k=(7 - removed) if i % 3 else rnd.randrange(0, 8 - removed)))
        probes.append(frozenset(ordered[removed:]) | ahead)
    probes += [frozenset(rnd.sample(range(10**6, 10**7), k=rnd.randrange(8, 60))) for _ in range(100)]
    small = frozenset(rnd.sample(range(2 * 10**7, 3 * 10**7), k=3))
    ledger.add([small])
    released.append(small)
    probes.append(frozenset(rnd.sample(range(10**7, 2 * 10**7), k=3)))  # shares no one with it, yet within 7
    for t in (0, 3, 7, 15, 20):
        for probe in probes:
            brute = any(0 < len(probe ^ other) <= t for other in released)
            assert ledger.near(probe, t) is brute, (t, len(probe))

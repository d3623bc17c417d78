"""services.tlog.tree: plans over stored perfect subtrees equal merkle.py's naive proofs.

Exhaustive for every tree size up to 130 (every index, every old size), then
hypothesis for larger sizes, where node hashes are computed directly from the
entries (not via appended_nodes) so the two store-building paths are
independent.  Address counts must stay within 2*log2(n) + 2.
"""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.tlog import merkle, tree

EXHAUSTIVE_MAX = 130


def _entries(n: int) -> list[bytes]:
    return [b"leaf %d" % i for i in range(n)]


def _bound(n: int) -> float:
    """The O(log n) read budget of one proof or root: c*log2(n) + c with c = 2."""
    return 2 * math.log2(max(n, 1)) + 2


def _check_plan_shape(plan: tree.Plan, size: int) -> None:
    """Entries are contiguous runs of existing perfect subtrees; at most one is composite."""
    assert sum(len(entry) > 1 for entry in plan) <= 1
    for entry in plan:
        for (level, index), nxt in itertools.pairwise(entry):
            assert nxt[0] < level
            assert tree.node_range(level, index)[1] == tree.node_range(*nxt)[0]
        for level, index in entry:
            assert tree.node_range(level, index)[1] <= size  # the node exists, hence is stored
    assert len(tree.plan_addresses(plan)) <= _bound(size)


def _count_plan(plan: tree.Plan) -> int:
    return sum(len(entry) for entry in plan)


@pytest.fixture(scope="module")
def grown() -> tuple[list[bytes], dict[tree.Address, bytes], list[int]]:
    """The store after appending EXHAUSTIVE_MAX entries, recording the reads of each append."""
    entries = _entries(EXHAUSTIVE_MAX)
    store: dict[tree.Address, bytes] = {}
    reads: list[int] = []
    for size, entry in enumerate(entries):
        calls: list[tree.Address] = []

        def get_node(level: int, index: int, calls: list[tree.Address] = calls) -> bytes:
            calls.append((level, index))
            return store[level, index]

        new = tree.appended_nodes(size, merkle.leaf_hash(entry), get_node)
        trailing_ones = (~size & (size + 1)).bit_length() - 1
        assert calls == [(lv, (size >> lv) - 1) for lv in range(trailing_ones)]
        assert [(lv, ix) for lv, ix, _ in new] == [(lv, size >> lv) for lv in range(trailing_ones + 1)]
        for level, index, h in new:
            assert (level, index) not in store  # nodes are written once, never updated
            store[level, index] = h
        assert len(store) == tree.node_count(size + 1)
        reads.append(len(calls))
    return entries, store, reads


@pytest.mark.parametrize("size", range(EXHAUSTIVE_MAX + 1))
def test_plans_equal_naive_proofs(size: int, grown: tuple[list[bytes], dict[tree.Address, bytes], list[int]]) -> None:
    entries, store, _ = grown
    prefix = entries[:size]
    root_plan = tree.root_plan(size)
    assert len(root_plan) == 1 and len(root_plan[0]) == size.bit_count()
    assert tree.hash_plan(root_plan, store) == [merkle.root_hash(prefix)]
    for index in range(size):
        plan = tree.inclusion_proof_plan(index, size)
        _check_plan_shape(plan, size)
        assert tree.hash_plan(plan, store) == merkle.inclusion_proof(prefix, index)
    for old in range(size + 1):
        plan = tree.consistency_proof_plan(old, size)
        _check_plan_shape(plan, size)
        assert tree.hash_plan(plan, store) == merkle.consistency_proof(prefix, old)


def test_append_reads_are_logarithmic(grown: tuple[list[bytes], dict[tree.Address, bytes], list[int]]) -> None:
    _, _, reads = grown
    assert all(r <= math.log2(size + 1) for size, r in enumerate(reads))
    assert sum(reads) < len(reads)  # amortised: fewer than one read per append


@st.composite
def big_case(draw: st.DrawFn) -> tuple[int, int, int]:
    size = draw(st.integers(EXHAUSTIVE_MAX + 1, 4000))
    return size, draw(st.integers(0, size - 1)), draw(st.integers(0, size))


@settings(max_examples=40, deadline=None)
@given(big_case())
def test_plans_equal_naive_proofs_beyond_exhaustive(case: tuple[int, int, int]) -> None:
    size, index, old = case
    entries = _entries(size)
    leaves = [merkle.leaf_hash(e) for e in entries]
    plans = [tree.root_plan(size), tree.inclusion_proof_plan(index, size), tree.consistency_proof_plan(old, size)]
    fetched = {}
    for address in tree.plan_addresses([entry for plan in plans for entry in plan]):
        begin, end = tree.node_range(*address)
        fetched[address] = merkle.root_from_leaf_hashes(leaves[begin:end])
    root, inclusion, consistency = (tree.hash_plan(plan, fetched) for plan in plans)
    assert root == [merkle.root_hash(entries)]
    assert inclusion == merkle.inclusion_proof(entries, index)
    assert consistency == merkle.consistency_proof(entries, old)


@given(st.integers(1, 2**64 - 1), st.data())
def test_plan_shape_and_read_budget_for_huge_trees(size: int, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(0, size))
    for plan in (tree.inclusion_proof_plan(index, size), tree.consistency_proof_plan(old, size)):
        _check_plan_shape(plan, size)
        assert _count_plan(plan) <= _bound(size)
    assert len(tree.inclusion_proof_plan(index, size)) == merkle.inclusion_proof_size(index, size)
    assert len(tree.consistency_proof_plan(old, size)) == merkle.consistency_proof_size(old, size)
    assert tree.root_plan(size) == [tree.range_nodes(0, size)]


@given(st.integers(0, 2**20), st.integers(0, 2**20))
def test_range_nodes_cover_the_range_exactly(a: int, b: int) -> None:
    begin, end = min(a, b), max(a, b)
    covered = begin
    for level, index in tree.range_nodes(begin, end):
        lo, hi = tree.node_range(level, index)
        assert lo == covered
        covered = hi
    assert covered == end


def test_hash_plan_folds_right_to_left_and_reports_missing_nodes() -> None:
    h = [merkle.leaf_hash(b"%d" % i) for i in range(3)]
    plan = [[(1, 0), (0, 2)], [(0, 2)], []]
    fetched = {(1, 0): h[0], (0, 2): h[2]}
    assert tree.hash_plan(plan, fetched) == [merkle.node_hash(h[0], h[2]), h[2], merkle.EMPTY_ROOT]
    with pytest.raises(tree.MissingNodeError) as err:
        tree.hash_plan([[(1, 0), (0, 3)]], fetched)
    assert err.value.args == ((0, 3),)
    assert tree.plan_addresses([[(1, 0), (0, 2)], [(0, 2)]]) == [(0, 2), (1, 0)]


def test_preconditions() -> None:
    for call in (
        lambda: tree.inclusion_proof_plan(5, 5),
        lambda: tree.inclusion_proof_plan(-1, 5),
        lambda: tree.consistency_proof_plan(6, 5),
        lambda: tree.consistency_proof_plan(-1, 5),
        lambda: tree.root_plan(-1),
        lambda: tree.range_nodes(3, 2),
        lambda: tree.node_range(-1, 0),
        lambda: tree.node_count(-1),
        lambda: tree.appended_nodes(-1, b"", lambda lv, ix: b""),
    ):
        with pytest.raises(ValueError):
            call()
    assert tree.consistency_proof_plan(0, 5) == [] and tree.consistency_proof_plan(5, 5) == []


def test_appended_nodes_propagates_storage_misses() -> None:
    def get_node(level: int, index: int) -> bytes:
        raise tree.MissingNodeError((level, index))

    assert tree.appended_nodes(4, b"x" * 32, get_node) == [(0, 4, b"x" * 32)]  # no read needed
    with pytest.raises(tree.MissingNodeError):
        tree.appended_nodes(5, b"x" * 32, get_node)

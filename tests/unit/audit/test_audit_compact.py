"""CompactRange: the checkpointer's and verifier's running root."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tlog import merkle, tree
from services.tlog.compact import CompactRange


def test_root_of_every_prefix_matches_the_reference() -> None:
    entries = [b"entry %d" % i for i in range(70)]
    rng = CompactRange()
    assert rng.root() == merkle.EMPTY_ROOT
    for n, e in enumerate(entries, start=1):
        rng.append(merkle.leaf_hash(e))
        assert rng.size == n
        assert rng.root() == merkle.root_hash(entries[:n])


@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=40))
def test_rebuilt_from_stored_peaks_it_extends_like_the_original(size: int, more: int) -> None:
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(size + more)]
    peaks = [merkle.root_from_leaf_hashes(leaves[(i << lv):((i + 1) << lv)]) for lv, i in tree.range_nodes(0, size)]
    rng = CompactRange.from_peaks(size, peaks)
    copy = rng.copy()
    for h in leaves[size:]:
        rng.append(h)
    assert rng.root() == merkle.root_from_leaf_hashes(leaves)
    assert copy.size == size and copy.root() == merkle.root_from_leaf_hashes(leaves[:size])


def test_wrong_number_of_peaks_is_refused() -> None:
    with pytest.raises(ValueError, match="peaks"):
        CompactRange.from_peaks(3, [merkle.EMPTY_ROOT])

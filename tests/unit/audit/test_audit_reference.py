"""Property tests of merkle.py and tree.py against a naive RFC 9162 reference.

The reference below is written straight from the RFC text and shares no code
with services.audit: MTH, PATH and SUBPROOF from RFC 9162 section 2.1 (the
recursive definitions), and the iterative verification algorithms of sections
2.1.3.2 and 2.1.4.2.  merkle.py generates proofs with the verifier's bit
arithmetic and tree.py plans them from stored perfect subtrees, so agreement
here cross-checks three independent formulations.
"""

from __future__ import annotations

import hashlib

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.tlog import merkle, tree

# --------------------------------------------------------------------------- reference (RFC 9162 section 2.1)


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """Largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return _sha(b"\x00" + d[0])
    k = _k(len(d))
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: list[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def ref_verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _sha(b"\x01" + p + r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _sha(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def ref_verify_consistency(first: int, second: int, root1: bytes, root2: bytes, path: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2, for 0 < first < second."""
    assert 0 < first < second
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [root1, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _sha(b"\x01" + c + fr), _sha(b"\x01" + c + sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _sha(b"\x01" + sr + c)
        fn, sn = fn >> 1, sn >> 1
    return fr == root1 and sr == root2 and sn == 0


# --------------------------------------------------------------------------- helpers and strategies


def _entries(n: int, salt: int = 0) -> list[bytes]:
    """n distinct entries (distinctness makes wrong-index probes fail for sure)."""
    return [b"entry-%d-%d" % (salt, i) for i in range(n)]


def _stored_nodes(entries: list[bytes]) -> dict[tree.Address, bytes]:
    """Build the perfect-subtree store the way the service does: one append at a time."""
    store: dict[tree.Address, bytes] = {}
    for i, e in enumerate(entries):
        for level, index, h in tree.appended_nodes(i, merkle.leaf_hash(e), lambda lv, ix: store[(lv, ix)]):
            store[(level, index)] = h
    return store


sizes = st.integers(min_value=1, max_value=300)
raw_entries = st.lists(st.binary(max_size=12), min_size=1, max_size=80)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    entries = _entries(draw(sizes), draw(st.integers(0, 1000)))
    return entries, draw(st.integers(0, len(entries) - 1))


@st.composite
def tree_and_old_size(draw: st.DrawFn) -> tuple[list[bytes], int]:
    entries = _entries(draw(st.integers(2, 300)), draw(st.integers(0, 1000)))
    return entries, draw(st.integers(1, len(entries) - 1))


def _flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    mutated = list(proof)
    h = bytearray(mutated[i])
    h[bit // 8] ^= 1 << (bit % 8)
    mutated[i] = bytes(h)
    return mutated


# --------------------------------------------------------------------------- roots


@given(raw_entries)
def test_root_matches_reference(entries: list[bytes]) -> None:
    want = ref_mth(entries)
    assert merkle.root_hash(entries) == want
    store = _stored_nodes(entries)
    assert tree.hash_plan(tree.root_plan(len(entries)), store) == [want]


def test_empty_root_matches_reference() -> None:
    assert merkle.root_hash([]) == ref_mth([]) == merkle.EMPTY_ROOT
    assert tree.hash_plan(tree.root_plan(0), {}) == [merkle.EMPTY_ROOT]


# --------------------------------------------------------------------------- inclusion


@given(raw_entries, st.data())
def test_inclusion_matches_reference_arbitrary_entries(entries: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(entries) - 1))
    want = ref_path(index, entries)
    assert merkle.inclusion_proof(entries, index) == want
    assert tree.hash_plan(tree.inclusion_proof_plan(index, len(entries)), _stored_nodes(entries)) == want


@given(tree_and_index())
def test_inclusion_generated_proofs_verify(case: tuple[list[bytes], int]) -> None:
    entries, index = case
    size, root, leaf = len(entries), ref_mth(entries), merkle.leaf_hash(entries[index])
    proof = merkle.inclusion_proof(entries, index)
    assert proof == ref_path(index, entries)
    assert tree.hash_plan(tree.inclusion_proof_plan(index, size), _stored_nodes(entries)) == proof
    assert merkle.verify_inclusion(leaf, index, size, proof, root) is None
    assert merkle.inclusion_ok(leaf, index, size, proof, root)
    assert merkle.root_from_inclusion_proof(leaf, index, size, proof) == root
    assert ref_verify_inclusion(index, size, leaf, proof, root)


@given(tree_and_index(), st.data())
def test_inclusion_mutations_rejected(case: tuple[list[bytes], int], data: st.DataObject) -> None:
    entries, index = case
    size, root, leaf = len(entries), ref_mth(entries), merkle.leaf_hash(entries[index])
    proof = merkle.inclusion_proof(entries, index)
    probes = [
        (leaf, index, size, proof[:-1], root),  # truncated
        (leaf, index, size, proof[1:], root),  # first element dropped
        (leaf, index, size, [*proof, root], root),  # extended
        (leaf, index, size, proof, _flip([root], 0, data.draw(st.integers(0, 255)))[0]),  # wrong root
        (_flip([leaf], 0, data.draw(st.integers(0, 255)))[0], index, size, proof, root),  # wrong leaf
    ]
    if proof:
        i, bit = data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 255))
        probes.append((leaf, index, size, _flip(proof, i, bit), root))  # flipped bit
    else:
        probes = probes[2:]  # size 1: nothing to truncate
    other = data.draw(st.integers(0, size + 3).filter(lambda j: j != index))
    probes.append((leaf, other, size, proof, root))  # wrong index (entries are distinct)
    for probe in probes:
        assert not merkle.inclusion_ok(*probe)
        lf, ix, sz, pr, rt = probe
        assert not ref_verify_inclusion(ix, sz, lf, pr, rt)


@given(tree_and_index(), st.integers(1, 1024))
def test_inclusion_wrong_size_agrees_with_reference(case: tuple[list[bytes], int], other_size: int) -> None:
    """A wrong tree size is not always detectable from the proof alone (the root
    binds the size: checkpoints sign both); the verdict must match the RFC's."""
    entries, index = case
    size, root, leaf = len(entries), ref_mth(entries), merkle.leaf_hash(entries[index])
    assume(other_size != size)
    proof = merkle.inclusion_proof(entries, index)
    ok = merkle.inclusion_ok(leaf, index, other_size, proof, root)
    assert ok == ref_verify_inclusion(index, other_size, leaf, proof, root)


# --------------------------------------------------------------------------- consistency


@given(raw_entries, st.data())
def test_consistency_matches_reference_arbitrary_entries(entries: list[bytes], data: st.DataObject) -> None:
    old = data.draw(st.integers(1, len(entries)))
    want = ref_proof(old, entries) if old < len(entries) else []
    assert merkle.consistency_proof(entries, old) == want
    assert tree.hash_plan(tree.consistency_proof_plan(old, len(entries)), _stored_nodes(entries)) == want
    merkle.verify_consistency(old, len(entries), want, ref_mth(entries[:old]), ref_mth(entries))


@given(tree_and_old_size())
def test_consistency_generated_proofs_verify(case: tuple[list[bytes], int]) -> None:
    entries, old = case
    size, root1, root2 = len(entries), ref_mth(entries[:old]), ref_mth(entries)
    proof = merkle.consistency_proof(entries, old)
    assert proof == ref_proof(old, entries)
    assert tree.hash_plan(tree.consistency_proof_plan(old, size), _stored_nodes(entries)) == proof
    assert merkle.verify_consistency(old, size, proof, root1, root2) is None
    assert merkle.consistency_ok(old, size, proof, root1, root2)
    assert merkle.root_from_consistency_proof(old, size, proof, root1) == root2
    assert ref_verify_consistency(old, size, root1, root2, proof)


@given(tree_and_old_size(), st.data())
def test_consistency_mutations_rejected(case: tuple[list[bytes], int], data: st.DataObject) -> None:
    entries, old = case
    size, root1, root2 = len(entries), ref_mth(entries[:old]), ref_mth(entries)
    proof = merkle.consistency_proof(entries, old)
    i, bit = data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 255))
    probes = [
        (old, size, _flip(proof, i, bit), root1, root2),  # flipped bit
        (old, size, proof[:-1], root1, root2),  # truncated
        (old, size, [*proof, root2], root1, root2),  # extended
        (old, size, [root1, *proof], root1, root2),  # preceding garbage
        (old, size, proof, root2, root1),  # swapped roots
        (old, size, proof, _flip([root1], 0, bit)[0], root2),  # wrong old root
        (old, size, proof, root1, _flip([root2], 0, bit)[0]),  # wrong new root
    ]
    for probe in probes:
        assert not merkle.consistency_ok(*probe)
        s1, s2, pr, r1, r2 = probe
        assert not ref_verify_consistency(s1, s2, r1, r2, pr)


@given(tree_and_old_size(), st.integers(1, 600), st.integers(1, 600))
def test_consistency_wrong_sizes_agree_with_reference(case: tuple[list[bytes], int], s1: int, s2: int) -> None:
    entries, old = case
    size, root1, root2 = len(entries), ref_mth(entries[:old]), ref_mth(entries)
    assume(s1 < s2 and (s1, s2) != (old, size))
    proof = merkle.consistency_proof(entries, old)
    assert merkle.consistency_ok(s1, s2, proof, root1, root2) == ref_verify_consistency(s1, s2, root1, root2, proof)


@settings(max_examples=25)
@given(st.integers(2, 2000), st.data())
def test_large_trees_match_reference(size: int, data: st.DataObject) -> None:
    entries = _entries(size)
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size - 1))
    store = _stored_nodes(entries)
    assert tree.hash_plan(tree.root_plan(size), store) == [ref_mth(entries)]
    assert tree.hash_plan(tree.inclusion_proof_plan(index, size), store) == ref_path(index, entries)
    assert tree.hash_plan(tree.consistency_proof_plan(old, size), store) == ref_proof(old, entries)

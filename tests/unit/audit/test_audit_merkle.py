"""Pinned hashes, preconditions and error types of services.tlog.merkle."""

from __future__ import annotations

import hashlib

import pytest

from services.tlog import merkle

ENTRIES = [b"a", b"b", b"c", b"d", b"e"]


def test_prefixes_and_sizes() -> None:
    assert merkle.LEAF_PREFIX == b"\x00"
    assert merkle.NODE_PREFIX == b"\x01"
    assert merkle.HASH_SIZE == 32


@pytest.mark.parametrize(
    ("got", "want"),
    [
        # Pinned as in transparency-dev/merkle rfc6962_test.go; each derivable with
        # `printf <hex> | xxd -r -p | sha256sum`.
        # echo -n | sha256sum
        (merkle.EMPTY_ROOT, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        # 00
        (merkle.leaf_hash(b""), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        # 00 4C313233343536 ("L123456")
        (merkle.leaf_hash(b"L123456"), "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"),
        # 01 4E313233 4E343536 ("N123", "N456")
        (merkle.node_hash(b"N123", b"N456"), "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"),
    ],
)
def test_pinned_hashes(got: bytes, want: str) -> None:
    assert got.hex() == want


def test_domain_separation() -> None:
    left, right = merkle.leaf_hash(b"Hello"), merkle.leaf_hash(b"World")
    assert left != right
    assert merkle.node_hash(left, right) != merkle.leaf_hash(left + right)  # second preimage
    assert merkle.node_hash(left, right) != merkle.node_hash(right, left)
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


@pytest.mark.parametrize(("n", "k"), [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (2**40 + 1, 2**40)])
def test_split_point(n: int, k: int) -> None:
    assert merkle.split_point(n) == k


def test_split_point_needs_two_leaves() -> None:
    with pytest.raises(ValueError):
        merkle.split_point(1)


def test_root_from_leaf_hashes_matches_root_hash() -> None:
    assert merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in ENTRIES]) == merkle.root_hash(ENTRIES)
    assert merkle.root_from_leaf_hashes([]) == merkle.EMPTY_ROOT


def test_proof_sizes_match_generated_proofs() -> None:
    for n in range(1, 70):
        entries = [bytes([i]) for i in range(n)]
        for i in range(n):
            assert merkle.inclusion_proof_size(i, n) == len(merkle.inclusion_proof(entries, i))
        for m in range(n + 1):
            assert merkle.consistency_proof_size(m, n) == len(merkle.consistency_proof(entries, m))


def test_generator_preconditions() -> None:
    for bad in (-1, 5):
        with pytest.raises(ValueError):
            merkle.inclusion_proof(ENTRIES, bad)
    for bad in (-1, 6):
        with pytest.raises(ValueError):
            merkle.consistency_proof(ENTRIES, bad)
    assert merkle.consistency_proof(ENTRIES, 0) == []  # as upstream; the verifier rejects size1 == 0
    assert merkle.consistency_proof(ENTRIES, 5) == []


def _inclusion_case() -> tuple[bytes, int, int, list[bytes], bytes]:
    return merkle.leaf_hash(b"c"), 2, 5, merkle.inclusion_proof(ENTRIES, 2), merkle.root_hash(ENTRIES)


@pytest.mark.parametrize(
    ("index", "size"),
    [(5, 5), (6, 5), (-1, 5), (0, 0), (2, 2**64), (2**64, 2**64 + 1)],
)
def test_inclusion_index_and_size_preconditions(index: int, size: int) -> None:
    leaf, _, _, proof, root = _inclusion_case()
    with pytest.raises(merkle.ProofError) as err:
        merkle.verify_inclusion(leaf, index, size, proof, root)
    assert not isinstance(err.value, merkle.RootMismatchError)


def test_inclusion_hash_lengths_are_checked_before_hashing() -> None:
    leaf, index, size, proof, root = _inclusion_case()
    for bad_leaf in (b"", leaf[:31], leaf + b"\x00"):
        with pytest.raises(merkle.ProofError, match="leaf hash"):
            merkle.verify_inclusion(bad_leaf, index, size, proof, root)
    with pytest.raises(merkle.ProofError, match=r"proof\[1\]"):
        merkle.verify_inclusion(leaf, index, size, [proof[0], proof[1][:16], proof[2]], root)


def test_root_mismatch_is_typed_and_carries_both_roots() -> None:
    leaf, index, size, proof, root = _inclusion_case()
    wrong = merkle.root_hash(ENTRIES[:4])
    with pytest.raises(merkle.RootMismatchError) as err:
        merkle.verify_inclusion(leaf, index, size, proof, wrong)
    assert err.value.expected_root == wrong
    assert err.value.calculated_root == root
    assert isinstance(err.value, merkle.ProofError) and isinstance(err.value, ValueError)


def test_bool_conveniences_only_swallow_proof_errors() -> None:
    leaf, index, size, proof, root = _inclusion_case()
    assert merkle.inclusion_ok(leaf, index, size, proof, root)
    assert not merkle.inclusion_ok(leaf, index + 1, size, proof, root)
    with pytest.raises(TypeError):
        merkle.inclusion_ok(None, index, size, proof, root)  # type: ignore[arg-type]
    r3, r5 = merkle.root_hash(ENTRIES[:3]), merkle.root_hash(ENTRIES)
    proof = merkle.consistency_proof(ENTRIES, 3)
    assert merkle.consistency_ok(3, 5, proof, r3, r5)
    assert not merkle.consistency_ok(3, 5, proof, r5, r3)


@pytest.mark.parametrize(
    ("size1", "size2", "proof_len", "match"),
    [
        (3, 2, 0, "size2"),
        (0, 0, 0, "empty tree"),
        (0, 5, 1, "empty tree"),
        (5, 5, 1, "not empty"),
        (3, 5, 0, "empty proof"),
        (3, 2**64, 1, "64-bit"),
        (-1, 5, 1, "64-bit"),
    ],
)
def test_consistency_preconditions(size1: int, size2: int, proof_len: int, match: str) -> None:
    root = merkle.root_hash(ENTRIES)
    with pytest.raises(merkle.ProofError, match=match) as err:
        merkle.verify_consistency(size1, size2, [root] * proof_len, root, root)
    assert not isinstance(err.value, merkle.RootMismatchError)


def test_consistency_equal_sizes() -> None:
    root = merkle.root_hash(ENTRIES)
    merkle.verify_consistency(5, 5, [], root, root)
    assert merkle.root_from_consistency_proof(5, 5, [], root) == root
    with pytest.raises(merkle.RootMismatchError):
        merkle.verify_consistency(5, 5, [], root, merkle.root_hash(ENTRIES[:4]))


def test_consistency_mismatch_on_old_root_is_detected_first() -> None:
    r3, r5 = merkle.root_hash(ENTRIES[:3]), merkle.root_hash(ENTRIES)
    proof = merkle.consistency_proof(ENTRIES, 3)
    wrong = merkle.root_hash(ENTRIES[:2])
    with pytest.raises(merkle.RootMismatchError) as err:
        merkle.root_from_consistency_proof(3, 5, proof, wrong)
    assert err.value.expected_root == wrong
    assert merkle.root_from_consistency_proof(3, 5, proof, r3) == r5


def test_consistency_proof_element_lengths_are_checked() -> None:
    r3, r5 = merkle.root_hash(ENTRIES[:3]), merkle.root_hash(ENTRIES)
    proof = merkle.consistency_proof(ENTRIES, 3)
    proof[-1] = proof[-1] + b"\x00"
    with pytest.raises(merkle.ProofError, match="proof"):
        merkle.verify_consistency(3, 5, proof, r3, r5)

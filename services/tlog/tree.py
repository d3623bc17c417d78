"""Incremental RFC 9162 log over stored perfect-subtree hashes: pure planning logic.

Storage keeps the hash of every *perfect* (complete) subtree of the log and
never rewrites one: a perfect subtree's hash is final the moment its last leaf
is appended.  A node is addressed as ``(level, index)``: level 0 holds the
leaf hashes, and node ``(level, i)`` covers leaves ``[i * 2**level,
(i + 1) * 2**level)``.  In a tree of ``size`` leaves, node ``(level, i)``
exists iff ``(i + 1) * 2**level <= size``; there are ``node_count(size)`` of
them.

This module does no I/O.  It tells the storage layer

* which nodes to insert when a leaf is appended (``appended_nodes``; it reads
  only the O(log n) left siblings it needs through a callback), and
* which stored nodes to read to answer a root, inclusion or consistency query
  (the ``*_plan`` functions), and how to hash what was read into the answer
  (``hash_plan``).

Plan format
    A ``Plan`` is a list with one entry per output hash, in output order (for
    proofs: the proof order of RFC 9162 / ``merkle.py``, bottom-up).  Each
    entry is a non-empty list of addresses ``(level, index)`` of perfect
    subtrees that together cover one contiguous leaf range, listed left to
    right (levels strictly decreasing).  A single address means "this stored
    hash".  Several addresses describe an *ephemeral* right-border node of the
    current tree, which is not stored because it is not yet complete; its hash
    is the right-to-left fold ``node_hash(h0, node_hash(h1, ... node_hash(hk-1,
    hk)))``.  ``root_plan(size)`` has exactly one entry, which is empty for
    size 0 (the root is then ``merkle.EMPTY_ROOT``).  At most one entry of an
    inclusion or consistency plan is composite, and every plan names
    O(log n) addresses in total: read them with one query
    (``plan_addresses``), then call ``hash_plan``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from services.tlog.merkle import EMPTY_ROOT, node_hash, split_point

__all__ = [
    "Address",
    "MissingNodeError",
    "Plan",
    "appended_nodes",
    "consistency_proof_plan",
    "hash_plan",
    "inclusion_proof_plan",
    "node_count",
    "node_range",
    "plan_addresses",
    "range_nodes",
    "root_plan",
]

Address = tuple[int, int]
"""``(level, index)`` of a perfect subtree; level 0 is the leaves."""

Plan = list[list[Address]]
"""One list of perfect-subtree addresses per output hash; see the module docstring."""


class MissingNodeError(KeyError):
    """``hash_plan`` was not given the hash of an address that the plan needs."""


def node_range(level: int, index: int) -> tuple[int, int]:
    """Return the leaf range ``[begin, end)`` covered by node ``(level, index)``."""
    if level < 0 or index < 0:
        raise ValueError(f"invalid node address ({level}, {index})")
    return index << level, (index + 1) << level


def node_count(size: int) -> int:
    """Number of perfect-subtree nodes stored for a tree of ``size`` leaves.

    Each appended leaf adds one leaf node plus one node per carry, giving
    ``2 * size - popcount(size)``.  Useful as a storage integrity check.
    """
    if size < 0:
        raise ValueError(f"negative size {size}")
    return 2 * size - size.bit_count()


def range_nodes(begin: int, end: int) -> list[Address]:
    """Decompose the leaf range ``[begin, end)`` into maximal perfect subtrees, left to right.

    This is the compact range of transparency-dev/merkle.  For the ranges
    used in RFC 9162 trees (``begin`` a multiple of a power of two that is
    >= ``end - begin``) the levels strictly decrease, follow the binary digits
    of ``end - begin``, and folding the hashes right to left gives the range's
    MTH.  Requires 0 <= begin <= end.
    """
    if not 0 <= begin <= end:
        raise ValueError(f"invalid range [{begin}, {end})")
    nodes: list[Address] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        if begin:
            level = min(level, (begin & -begin).bit_length() - 1)
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


# --------------------------------------------------------------------------- append


def appended_nodes(size: int, leaf_hash: bytes, get_node: Callable[[int, int], bytes]) -> list[tuple[int, int, bytes]]:
    """Return the nodes ``(level, index, hash)`` created by appending leaf number ``size``.

    ``size`` is the tree size *before* the append (the new leaf's index) and
    ``leaf_hash`` is ``merkle.leaf_hash(entry)``.  The result starts with the
    leaf node ``(0, size, leaf_hash)`` and continues with one parent per
    completed perfect subtree, bottom-up; it has ``1 + t`` items where ``t``
    is the number of trailing one bits of ``size``.  ``get_node(level, index)``
    must return a stored hash; it is called exactly ``t`` times, for the left
    siblings ``(l, (size >> l) - 1)``, l = 0 .. t-1, all of which exist in a
    tree of ``size`` leaves.  Insert every returned node in the same
    transaction as the entry.
    """
    if size < 0:
        raise ValueError(f"negative size {size}")
    nodes = [(0, size, leaf_hash)]
    level, index, current = 0, size, leaf_hash
    while index & 1:
        current = node_hash(get_node(level, index - 1), current)
        level, index = level + 1, index >> 1
        nodes.append((level, index, current))
    return nodes


# --------------------------------------------------------------------------- plans


def root_plan(size: int) -> Plan:
    """Plan for the root of the tree of ``size`` leaves: one entry, the peaks of the tree.

    The entry is ``range_nodes(0, size)`` (at most ``size.bit_length()``
    addresses); it is empty for size 0, whose root is ``merkle.EMPTY_ROOT``.
    """
    if size < 0:
        raise ValueError(f"negative size {size}")
    return [range_nodes(0, size)]


def inclusion_proof_plan(index: int, size: int) -> Plan:
    """Plan for the inclusion proof of leaf ``index`` in the tree of ``size``.

    Follows RFC 9162 section 2.1.3.1 PATH(m, D[n]); entries are bottom-up
    like ``merkle.inclusion_proof``.  The leaf's own hash is node
    ``(0, index)``.  Requires 0 <= index < size.
    """
    if not 0 <= index < size:
        raise ValueError(f"index {index} out of range for size {size}")
    plan: Plan = []
    lo, hi, m = 0, size, index
    # Walk down from the root, collecting the sibling of each step; reverse at the end.
    while hi - lo > 1:
        k = split_point(hi - lo)
        if m < k:
            plan.append(range_nodes(lo + k, hi))
            hi = lo + k
        else:
            plan.append(range_nodes(lo, lo + k))
            lo, m = lo + k, m - k
    plan.reverse()
    return plan


def consistency_proof_plan(size1: int, size2: int) -> Plan:
    """Plan for the consistency proof from the tree of ``size1`` to that of ``size2``.

    Follows RFC 9162 section 2.1.4.1 SUBPROOF(m, D[n], true), in the order of
    ``merkle.consistency_proof``.  Requires 0 <= size1 <= size2; the plan is
    empty when size1 is 0 or equal to size2, as upstream.
    """
    if not 0 <= size1 <= size2:
        raise ValueError(f"need 0 <= size1 <= size2, got {size1}, {size2}")
    if size1 in (0, size2):
        return []
    plan: Plan = []
    lo, hi, m, complete = 0, size2, size1, True
    while m != hi - lo:
        k = split_point(hi - lo)
        if m <= k:
            plan.append(range_nodes(lo + k, hi))
            hi = lo + k
        else:
            plan.append(range_nodes(lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        # [lo, hi) is a perfect subtree inside the old tree that the verifier
        # cannot derive from root1 alone.
        plan.append(range_nodes(lo, hi))
    plan.reverse()
    return plan


def plan_addresses(plan: Iterable[Iterable[Address]]) -> list[Address]:
    """Return the distinct addresses a plan needs, sorted: the rows to fetch."""
    return sorted({address for entry in plan for address in entry})


def hash_plan(plan: Iterable[Iterable[Address]], fetched: Mapping[Address, bytes]) -> list[bytes]:
    """Turn a plan and the fetched node hashes into the output hashes.

    ``fetched`` maps ``(level, index)`` to the stored hash.  A single-address
    entry yields that hash; a composite entry is folded right to left with
    ``node_hash``; an empty entry (only in ``root_plan(0)``) yields
    ``EMPTY_ROOT``.  Raises ``MissingNodeError`` for an address not in
    ``fetched``.
    """
    out = []
    for entry in plan:
        hashes = []
        for address in entry:
            try:
                hashes.append(fetched[address])
            except KeyError:
                raise MissingNodeError(address) from None
        if not hashes:
            out.append(EMPTY_ROOT)
            continue
        current = hashes[-1]
        for h in reversed(hashes[:-1]):
            current = node_hash(h, current)
        out.append(current)
    return out

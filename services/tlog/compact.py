"""A compact range: the peaks of a log prefix, enough to extend it and hash its root.

Pure and in memory. The checkpointer keeps one at the last signed size and
extends it with the leaf hashes of new entries, so that it re-derives every
new root from the entries themselves; the verifier streams a whole log
through one. The peaks of a tree of ``size`` leaves are its maximal perfect
subtrees, left to right (``tree.range_nodes(0, size)``); the root folds them
right to left, exactly as ``tree.hash_plan(tree.root_plan(size))`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.tlog import merkle, tree

__all__ = ["CompactRange"]


class CompactRange:
    """The perfect-subtree peaks of the leaf range ``[0, size)``."""

    __slots__ = ("_peaks", "size")

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[tuple[int, bytes]] = []  # (height, hash), left to right, heights decreasing

    @classmethod
    def from_peaks(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Rebuild from stored peak hashes, given in ``tree.range_nodes(0, size)`` order."""
        addresses = tree.range_nodes(0, size)
        if len(addresses) != len(hashes):
            raise ValueError(f"a tree of size {size} has {len(addresses)} peaks, got {len(hashes)}")
        rng = cls()
        rng.size = size
        rng._peaks = [(level, h) for (level, _), h in zip(addresses, hashes, strict=True)]
        return rng

    def copy(self) -> CompactRange:
        rng = CompactRange()
        rng.size, rng._peaks = self.size, list(self._peaks)
        return rng

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf (its ``merkle.leaf_hash``), merging completed subtrees."""
        node, height = leaf_hash, 0
        peaks = self._peaks
        while peaks and peaks[-1][0] == height:
            node = merkle.node_hash(peaks.pop()[1], node)
            height += 1
        peaks.append((height, node))
        self.size += 1

    def root(self) -> bytes:
        """The RFC 9162 root hash of the leaves so far (``EMPTY_ROOT`` when empty)."""
        if not self._peaks:
            return merkle.EMPTY_ROOT
        acc = self._peaks[-1][1]
        for _, h in reversed(self._peaks[:-1]):
            acc = merkle.node_hash(h, acc)
        return acc

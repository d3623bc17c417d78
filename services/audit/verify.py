"""Independent verification of the audit log, as a regulator runs it.

Trust nothing the server computed: recompute every leaf hash from the entries,
rebuild every checkpoint's root, check each checkpoint's signature with the
published verifier key and that each checkpoint is consistent with the one
before. When a root does not match, name the first entry that fails to prove
inclusion in the last checkpoint that still verifies.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.audit import merkle, note


@dataclass
class Report:
    entries: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    first_bad_entry: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _compact_roots(leaf_hashes: Sequence[bytes], sizes: Sequence[int]) -> dict[int, bytes]:
    """Roots of the prefixes of ``leaf_hashes`` at each size, in one pass (compact range)."""
    want = sorted(set(sizes))
    roots: dict[int, bytes] = {}
    stack: list[tuple[int, bytes]] = []  # (height, hash) of perfect subtrees, left to right
    it = iter(want)
    target = next(it, None)
    if target == 0:
        roots[0] = merkle.EMPTY_ROOT
        target = next(it, None)
    for n, lh in enumerate(leaf_hashes, start=1):
        node, height = lh, 0
        while stack and stack[-1][0] == height:
            node = merkle.node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
        while target is not None and target == n:
            acc = stack[-1][1]
            for _, h in reversed(stack[:-1]):
                acc = merkle.node_hash(h, acc)
            roots[n] = acc
            target = next(it, None)
    return roots


def verify_log(
    *,
    entries: Sequence[bytes],
    checkpoints: Sequence[str],
    verifier_key: str,
    inclusion_proof: Callable[[int, int], list[bytes]] | None = None,
) -> Report:
    """Check ``entries`` (canonical events, in index order) against signed ``checkpoints``."""
    report = Report(entries=len(entries), checkpoints=len(checkpoints))
    verifier = note.new_verifier(verifier_key)
    parsed: list[note.Checkpoint] = []
    for text in checkpoints:
        try:
            parsed.append(note.open_checkpoint(text, verifier))
        except note.NoteError as exc:
            report.problems.append(f"checkpoint signature invalid: {exc}")
    parsed.sort(key=lambda c: c.size)
    leaf_hashes = [merkle.leaf_hash(e) for e in entries]
    roots = _compact_roots(leaf_hashes, [c.size for c in parsed if c.size <= len(entries)])
    last_good: note.Checkpoint | None = None
    for cp in parsed:
        if cp.size > len(entries):
            report.problems.append(
                f"checkpoint at size {cp.size} no longer matches: the log has only {len(entries)} entries "
                "(entries were removed)")
            continue
        if roots[cp.size] != cp.root_hash:
            report.problems.append(f"checkpoint at size {cp.size} no longer matches the entries")
            if report.first_bad_entry is None:
                report.first_bad_entry = _first_bad(leaf_hashes, cp, last_good, inclusion_proof)
            continue
        last_good = cp
    if report.first_bad_entry is not None:
        report.problems.insert(0, f"first bad entry: index {report.first_bad_entry}")
    return report


def _first_bad(leaf_hashes: Sequence[bytes], cp: note.Checkpoint, last_good: note.Checkpoint | None,
               inclusion_proof: Callable[[int, int], list[bytes]] | None) -> int | None:
    """The first entry in the failing checkpoint that does not prove inclusion under its root."""
    start = last_good.size if last_good else 0
    if inclusion_proof is None:
        return None
    for i in range(start, cp.size):
        try:
            merkle.verify_inclusion(leaf_hashes[i], i, cp.size, inclusion_proof(i, cp.size), cp.root_hash)
        except merkle.ProofError:
            return i
    # Every entry after the last good checkpoint proves inclusion: the change is earlier.
    for i in range(0, start):
        try:
            merkle.verify_inclusion(leaf_hashes[i], i, cp.size, inclusion_proof(i, cp.size), cp.root_hash)
        except merkle.ProofError:
            return i
    return None


def b64(raw: str) -> bytes:
    return base64.b64decode(raw)

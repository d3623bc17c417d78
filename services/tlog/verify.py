"""Independent verification of the audit log, as a regulator runs it.

Trust nothing the server computed. Check every checkpoint's signature with the
log's verifier key (and witnesses' cosignatures, if their keys are given);
check that each signed checkpoint is consistent with the one before, with the
log's own consistency proofs; stream every entry, hash it, and rebuild the root
at every checkpoint size. When a checkpoint no longer matches the entries,
name it and, when possible, the first bad entry: the log's stored leaf hashes
are fetched and, if *they* still reproduce the signed root (so they are the
hashes that were signed), the first entry whose hash differs from its signed
leaf hash is the first bad one.

Memory: 32 bytes per entry (the leaf hashes), never the entries themselves.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from services.tlog import merkle, note, tree
from services.tlog.compact import CompactRange

H = merkle.HASH_SIZE


class LogSource(Protocol):
    """Where the verifier reads a log from (``services.cli.audit`` reads it over HTTP)."""

    def checkpoints(self) -> list[str]: ...
    def entries(self) -> Iterator[tuple[int, bytes]]: ...
    def leaf_hashes(self, size: int) -> Iterator[bytes]: ...
    def consistency_proof(self, first: int, second: int) -> list[bytes]: ...


class MemorySource:
    """A log held in memory: entries, checkpoint notes and, optionally, the stored leaf hashes.

    Without ``stored_leaves`` the leaf hashes and consistency proofs are derived
    from ``entries`` themselves, as a log that kept no separate tree would.
    """

    def __init__(self, entries: Sequence[bytes], checkpoints: Sequence[str],
                 stored_leaves: Sequence[bytes] | None = None) -> None:
        self._entries = list(entries)
        self._checkpoints = list(checkpoints)
        self._leaves = list(stored_leaves) if stored_leaves is not None else [
            merkle.leaf_hash(e) for e in self._entries]

    def checkpoints(self) -> list[str]:
        return list(self._checkpoints)

    def entries(self) -> Iterator[tuple[int, bytes]]:
        return enumerate(self._entries)

    def leaf_hashes(self, size: int) -> Iterator[bytes]:
        return iter(self._leaves[:size])

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        plan = tree.consistency_proof_plan(first, second)
        nodes = {}
        for address in tree.plan_addresses(plan):
            lo, hi = tree.node_range(*address)
            nodes[address] = merkle.root_from_leaf_hashes(self._leaves[lo:hi])
        return tree.hash_plan(plan, nodes)


@dataclass
class Report:
    entries: int = 0
    checkpoints: int = 0
    cosignatures: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    first_bad_entry: int | None = None
    bad_checkpoint: int | None = None  # size of the first signed checkpoint the entries no longer match

    @property
    def ok(self) -> bool:
        return not self.problems


def _open_all(texts: Sequence[str], verifier: note.Verifier, witnesses: Sequence[note.Verifier],
              report: Report) -> dict[int, note.Checkpoint]:
    by_size: dict[int, note.Checkpoint] = {}
    report.cosignatures = {w.name: 0 for w in witnesses}
    for text in texts:
        try:
            cp = note.open_checkpoint(text, verifier)
        except note.NoteError as exc:
            report.problems.append(f"a checkpoint's signature does not verify with the log key: {exc}")
            continue
        seen = by_size.get(cp.size)
        if seen is not None and seen.root_hash != cp.root_hash:
            report.problems.append(f"two signed checkpoints at size {cp.size} with different roots (a fork)")
        by_size[cp.size] = cp
        for w in witnesses:
            try:
                note.verify_cosignature(text, w)
                report.cosignatures[w.name] += 1
            except note.UnverifiedNoteError:
                pass
            except note.NoteError as exc:
                report.problems.append(f"checkpoint {cp.size}: bad cosignature from {w.name}: {exc}")
    return by_size


def _check_chain(cps: Sequence[note.Checkpoint], source: LogSource, report: Report) -> None:
    for old, new in itertools.pairwise(cps):
        try:
            proof = source.consistency_proof(old.size, new.size)
            merkle.verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
        except merkle.ProofError as exc:
            report.problems.append(f"checkpoint {new.size} is not consistent with checkpoint {old.size}: {exc}")
        except Exception as exc:  # the log could not answer: as bad as a wrong answer
            report.problems.append(f"the log cannot prove checkpoint {new.size} extends {old.size}: {exc}")


def _first_bad(leaves: bytes, cp: note.Checkpoint, source: LogSource, report: Report) -> None:
    served = b"".join(source.leaf_hashes(cp.size))
    if len(served) != cp.size * H:
        report.problems.append(f"the log serves {len(served) // H} leaf hashes for checkpoint {cp.size}")
        return
    signed = CompactRange()
    for i in range(cp.size):
        signed.append(served[i * H:(i + 1) * H])
    if signed.root() != cp.root_hash:
        report.problems.append(f"the log's stored tree does not match checkpoint {cp.size} either: "
                               "the changed entry cannot be named")
        return
    for i in range(cp.size):
        if leaves[i * H:(i + 1) * H] != served[i * H:(i + 1) * H]:
            report.first_bad_entry = i
            return


def verify_log(source: LogSource | None = None, verifier_key: str = "", witness_keys: Iterable[str] = (), *,
               entries: Sequence[bytes] | None = None, checkpoints: Sequence[str] | None = None) -> Report:
    """Verify the whole log behind ``source``; see the module docstring for what is checked.

    ``entries`` and ``checkpoints`` instead of a source verify a log held in
    memory (``MemorySource``).
    """
    if source is None:
        source = MemorySource(entries or [], checkpoints or [])
    report = Report()
    texts = source.checkpoints()
    report.checkpoints = len(texts)
    by_size = _open_all(texts, note.new_verifier(verifier_key), [note.new_verifier(k) for k in witness_keys],
                        report)
    cps = [by_size[s] for s in sorted(by_size)]
    _check_chain(cps, source, report)

    leaves = bytearray()
    rng = CompactRange()
    roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT}
    wanted = set(by_size)
    for index, entry in source.entries():
        if index != rng.size:
            report.problems.append(f"entry index gap: expected {rng.size}, got {index}")
            break
        h = merkle.leaf_hash(entry)
        leaves += h
        rng.append(h)
        if rng.size in wanted:
            roots[rng.size] = rng.root()
    report.entries = rng.size

    for cp in cps:
        if cp.size > report.entries:
            report.problems.append(
                f"checkpoint at size {cp.size} no longer matches: the log has only {report.entries} entries "
                f"(entries {report.entries}..{cp.size - 1} are gone)")
        elif roots[cp.size] != cp.root_hash:
            report.problems.append(f"checkpoint at size {cp.size} no longer matches the entries")
            if report.bad_checkpoint is None:
                _first_bad(bytes(leaves), cp, source, report)
        else:
            continue
        if report.bad_checkpoint is None:
            report.bad_checkpoint = cp.size
    if report.first_bad_entry is not None:
        report.problems.insert(0, f"first bad entry: index {report.first_bad_entry}")
    return report


def b64(raw: str) -> bytes:
    return base64.b64decode(raw)

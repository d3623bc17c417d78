"""Signed checkpoints and their witness cosignatures.

The checkpointer never trusts the stored subtree hashes alone. It keeps the
compact range of the tree at the last signed checkpoint (rebuilt at start from
the stored peaks and checked against that checkpoint's *signed* root), hashes
every entry appended since then from its stored bytes, and so re-derives the
new root from the entries themselves. It signs only if that root equals the
root of the stored tree and a consistency proof from the stored tree proves it
extends the last signed checkpoint. Anything else raises ``InconsistentLog``
and nothing is signed.

Cosignatures come from witnesses (``witness.py``); one is stored only if it is
a valid C2SP tlog-cosignature, by a witness key the log was configured to
trust, over the exact checkpoint text the log signed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from services.audit.log import MerkleLog
from services.audit.signing import LogSigner
from services.audit.store import Checkpoint, Cosignature
from services.contracts import errors
from services.tlog import merkle, note
from services.tlog.compact import CompactRange

CHECKPOINT = Checkpoint.__table__  # type: ignore[attr-defined]
COSIGNATURE = Cosignature.__table__  # type: ignore[attr-defined]


class InconsistentLog(errors.HealthgovError):
    """The stored tree does not extend the last signed checkpoint: refuse to sign.

    A 500 (the server's own state is wrong, not the request); ``str()`` keeps
    the detail for the operators' log, the caller gets a fixed sentence.
    """

    code = "inconsistent_log"
    default_message = "the stored log does not extend its last signed checkpoint; nothing was signed"

    def __init__(self, detail: str) -> None:
        super().__init__()
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class CosignatureRejected(errors.Invalid):
    """A submitted cosignature is not one the log can publish (400)."""


@dataclass(frozen=True)
class SignedCheckpoint:
    size: int
    root: bytes
    note: str  # the log-signed note, without cosignatures


class CheckpointStore:
    """Reads and writes the checkpoint and cosignature tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def latest(self, *, witnessed: bool = False) -> SignedCheckpoint | None:
        q = select(CHECKPOINT.c.size, CHECKPOINT.c.root, CHECKPOINT.c.note)
        if witnessed:
            q = q.where(CHECKPOINT.c.size.in_(select(COSIGNATURE.c.size)))
        with self.engine.connect() as conn:
            row = conn.execute(q.order_by(CHECKPOINT.c.size.desc()).limit(1)).first()
        return None if row is None else SignedCheckpoint(int(row.size), bytes(row.root), row.note)

    def get(self, size: int) -> SignedCheckpoint | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(CHECKPOINT.c.size, CHECKPOINT.c.root, CHECKPOINT.c.note)
                               .where(CHECKPOINT.c.size == size)).first()
        return None if row is None else SignedCheckpoint(int(row.size), bytes(row.root), row.note)

    def covering(self, index: int) -> SignedCheckpoint | None:
        """The checkpoint to prove entry ``index`` against: the latest witnessed one, else the latest."""
        for cp in (self.latest(witnessed=True), self.latest()):
            if cp is not None and cp.size > index:
                return cp
        return None

    def all(self, since_size: int = 0) -> list[SignedCheckpoint]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(CHECKPOINT.c.size, CHECKPOINT.c.root, CHECKPOINT.c.note)
                                .where(CHECKPOINT.c.size >= since_size).order_by(CHECKPOINT.c.size)).all()
        return [SignedCheckpoint(int(r.size), bytes(r.root), r.note) for r in rows]

    def add(self, cp: SignedCheckpoint) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(CHECKPOINT), {"size": cp.size, "root": cp.root, "note": cp.note})

    def cosignature_lines(self, sizes: Iterable[int]) -> dict[int, list[str]]:
        wanted = list(sizes)
        out: dict[int, list[str]] = {s: [] for s in wanted}
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), 1000):
                rows = conn.execute(select(COSIGNATURE.c.size, COSIGNATURE.c.line)
                                    .where(COSIGNATURE.c.size.in_(wanted[i:i + 1000]))
                                    .order_by(COSIGNATURE.c.size, COSIGNATURE.c.witness)).all()
                for r in rows:
                    out[int(r.size)].append(r.line)
        return out

    def published(self, cp: SignedCheckpoint) -> str:
        """The checkpoint as published: the log's signed note plus every stored cosignature line."""
        return cp.note + "".join(self.cosignature_lines([cp.size])[cp.size])

    def add_cosignature(self, size: int, witness: str, line: str) -> bool:
        """Store one cosignature line; False if this witness already cosigned this size."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(COSIGNATURE), {"size": size, "witness": witness, "line": line})
        except IntegrityError:
            return False
        return True


class Checkpointer:
    """Signs checkpoints, at an interval and on demand, only over a re-derived, consistent root."""

    def __init__(self, log: MerkleLog, store: CheckpointStore, signer: LogSigner) -> None:
        self.log = log
        self.store = store
        self.signer = signer
        self._lock = threading.Lock()
        self._range: CompactRange | None = None  # the tree at the last signed checkpoint, verified

    def checkpoint(self) -> SignedCheckpoint | None:
        """Sign a checkpoint for the current size if the log grew; return the latest checkpoint."""
        with self._lock:
            last = self.store.latest()
            size = self.log.size()
            if size == 0 or (last is not None and last.size >= size):
                return last
            rng = self._verified_base(last).copy()
            for index, body in self.log.iter_bodies(rng.size, size):
                if index != rng.size:
                    raise InconsistentLog(f"entry {rng.size} is missing")
                rng.append(merkle.leaf_hash(body))
            if rng.size != size:
                raise InconsistentLog(f"entries end at {rng.size}, the tree claims {size}")
            root = rng.root()
            if self.log.root(size) != root:
                raise InconsistentLog(f"the stored subtree hashes at size {size} disagree with the entries")
            if last is not None:
                proof = self.log.consistency_proof(last.size, size)
                try:
                    merkle.verify_consistency(last.size, size, proof, self._signed_root(last), root)
                except merkle.ProofError as exc:
                    raise InconsistentLog(f"size {size} does not extend checkpoint {last.size}: {exc}") from exc
            cp = SignedCheckpoint(size, root, self.signer.sign(size, root))
            try:
                self.store.add(cp)
            except IntegrityError:  # another writer signed this size first: use theirs
                self._range = None
                return self.store.get(size)
            self._range = rng
            return cp

    def _signed_root(self, cp: SignedCheckpoint) -> bytes:
        return note.open_checkpoint(cp.note, self.signer.verifier).root_hash

    def _verified_base(self, last: SignedCheckpoint | None) -> CompactRange:
        if last is None:
            return CompactRange()
        if self._range is not None and self._range.size == last.size:
            return self._range
        rng = CompactRange.from_peaks(last.size, self.log.peaks(last.size))
        if rng.root() != self._signed_root(last):
            raise InconsistentLog(f"the stored tree no longer matches signed checkpoint {last.size}")
        return rng


def accept_cosignature(store: CheckpointStore, signer: LogSigner, witnesses: Iterable[note.Verifier],
                       cosigned: str) -> list[str]:
    """Store the valid cosignatures by trusted ``witnesses`` found on ``cosigned``; return their names.

    ``cosigned`` is the log's checkpoint note with the witness's signature line
    added. Raises ``CosignatureRejected`` if it is not a checkpoint this log
    signed, or carries no valid cosignature from a trusted witness.
    """
    try:
        parsed = note.open_checkpoint(cosigned, signer.verifier)
    except note.NoteError as exc:
        raise CosignatureRejected(f"not a checkpoint signed by this log: {exc}") from exc
    cp = store.get(parsed.size)
    if cp is None or note.parse_note(cp.note).text != note.parse_note(cosigned).text:
        raise CosignatureRejected(f"this log never signed that checkpoint at size {parsed.size}")
    stored: list[str] = []
    for witness in witnesses:
        try:
            opened = note.open_note(cosigned, [witness])
            note.verify_cosignature(cosigned, witness)
        except note.UnverifiedNoteError:
            continue  # this witness did not sign
        except note.NoteError as exc:
            raise CosignatureRejected(f"bad cosignature from {witness.name}: {exc}") from exc
        store.add_cosignature(parsed.size, f"{witness.name}+{witness.key_id:08x}", opened.sigs[0].line)
        stored.append(witness.name)
    if not stored:
        raise CosignatureRejected("no valid cosignature from a witness this log trusts")
    return stored

"""The incremental log and the checkpointer on real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import event as sa_event

from services.audit import store
from services.audit.checkpoints import (
    Checkpointer,
    CheckpointStore,
    CosignatureRejected,
    InconsistentLog,
    accept_cosignature,
)
from services.audit.log import MerkleLog
from services.audit.signing import LogSigner
from services.tlog import merkle, note
from tests.integration.audit.conftest import Db, tamper
from tests.unit.audit.factory import entry

ORIGIN = "it.healthgov.example/audit"


@pytest.fixture
def parts(db: Db) -> tuple[MerkleLog, CheckpointStore, Checkpointer, LogSigner]:
    store.migrate(db.url)
    engine = store.connect(db.url)
    signer = LogSigner(ORIGIN, bytes(range(32)))
    log, cps = MerkleLog(engine), CheckpointStore(engine)
    return log, cps, Checkpointer(log, cps, signer), signer


def _count_statements(log: MerkleLog) -> list[str]:
    seen: list[str] = []
    sa_event.listen(log.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_appends_are_idempotent_and_conflicts_are_reported(parts) -> None:  # type: ignore[no-untyped-def]
    log, *_ = parts
    a, b, c = entry(), entry(), entry()
    assert log.append([a, b, a]) == log.append([]).__class__(size=2, new=2, conflicts=[])
    again = log.append([b, c, c])
    assert (again.size, again.new, again.conflicts) == (3, 1, [])
    altered = orjson.loads(b)
    altered["purpose"] = "HMARKT"
    clash = log.append([orjson.dumps(altered)])
    assert (clash.size, clash.new, clash.conflicts) == (3, 0, [altered["event_id"]])
    assert [bytes(r.body) for r in log.entries(0, 10)] == [a, b, c]


def test_proofs_from_stored_nodes_equal_the_reference(parts) -> None:  # type: ignore[no-untyped-def]
    log, *_ = parts
    entries = [entry() for _ in range(37)]
    for i in range(0, 37, 5):  # batches of different shapes
        log.append(entries[i:i + 5])
    for size in (1, 2, 7, 8, 16, 31, 37):
        assert log.root(size) == merkle.root_hash(entries[:size])
        for index in range(size):
            assert log.inclusion_proof(index, size) == merkle.inclusion_proof(entries[:size], index)
        for old in range(1, size + 1):
            assert log.consistency_proof(old, size) == merkle.consistency_proof(entries[:size], old)


def test_reads_are_constant_per_proof_and_per_batch(parts) -> None:  # type: ignore[no-untyped-def]
    log, *_ = parts
    log.append([entry() for _ in range(1000)])
    seen = _count_statements(log)
    log.inclusion_proof(517, 1000)
    log.consistency_proof(300, 1000)
    log.root(999)
    assert len([s for s in seen if "audit_node" in s]) == 3  # one query each, whatever the size
    seen.clear()
    log.append([entry() for _ in range(500)])
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT") and "pg_advisory" not in s]
    assert len(reads) == 3  # size, known ids, peaks: not one per entry


def test_checkpoints_are_signed_consistent_and_only_when_the_log_grew(parts) -> None:  # type: ignore[no-untyped-def]
    log, cps, cpr, signer = parts
    assert cpr.checkpoint() is None  # empty log: nothing to sign
    log.append([entry() for _ in range(10)])
    first = cpr.checkpoint()
    assert first and first.size == 10 and cpr.checkpoint() == first
    log.append([entry() for _ in range(7)])
    second = cpr.checkpoint()
    assert second and second.size == 17
    opened = [note.open_checkpoint(c.note, signer.verifier) for c in (first, second)]
    merkle.verify_consistency(10, 17, log.consistency_proof(10, 17), opened[0].root_hash, opened[1].root_hash)
    assert [c.size for c in cps.all()] == [10, 17]


@pytest.mark.parametrize(("table", "sql"), [
    ("audit_node", "UPDATE audit_node SET hash = :h WHERE level = 1 AND idx = 6"),  # a peak at size 15
    ("audit_entry", "UPDATE audit_entry SET body = :b WHERE idx = 12"),
])
def test_nothing_is_signed_over_a_tree_that_disagrees_with_its_entries(parts, db: Db, table: str,
                                                                      sql: str) -> None:  # type: ignore[no-untyped-def]
    log, cps, cpr, _ = parts
    log.append([entry() for _ in range(10)])
    cpr.checkpoint()
    log.append([entry() for _ in range(5)])
    tamper(db, table, sql, h=bytes(32), b=entry())
    with pytest.raises(InconsistentLog, match="disagree with the entries"):
        cpr.checkpoint()
    assert [c.size for c in cps.all()] == [10]


def test_a_restarted_checkpointer_checks_the_stored_tree_against_the_signed_root(parts, db: Db) -> None:  # type: ignore[no-untyped-def]
    log, cps, cpr, signer = parts
    log.append([entry() for _ in range(12)])
    cpr.checkpoint()
    log.append([entry() for _ in range(3)])
    tamper(db, "audit_node", "UPDATE audit_node SET hash = :h WHERE level = 3 AND idx = 0", h=bytes(32))
    with pytest.raises(InconsistentLog, match="no longer matches signed checkpoint 12"):
        Checkpointer(log, cps, signer).checkpoint()


def test_a_forged_consistency_proof_stops_the_signature(parts, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    log, cps, cpr, _ = parts
    log.append([entry() for _ in range(6)])
    cpr.checkpoint()
    log.append([entry() for _ in range(5)])
    honest = log.consistency_proof
    monkeypatch.setattr(log, "consistency_proof", lambda a, b: [bytes(32), *honest(a, b)[1:]])
    with pytest.raises(InconsistentLog, match="does not extend checkpoint 6"):
        cpr.checkpoint()
    assert [c.size for c in cps.all()] == [6]


def test_only_valid_cosignatures_by_trusted_witnesses_are_published(parts) -> None:  # type: ignore[no-untyped-def]
    log, cps, cpr, signer = parts
    log.append([entry() for _ in range(4)])
    cp = cpr.checkpoint()
    assert cp is not None
    w_skey, w_vkey = note.generate_key("it.healthgov.example/witness", note.ALG_COSIGNATURE_V1)
    stranger_skey, _ = note.generate_key("it.healthgov.example/stranger", note.ALG_COSIGNATURE_V1)
    trusted = [note.new_verifier(w_vkey)]
    with pytest.raises(CosignatureRejected, match="no valid cosignature"):
        accept_cosignature(cps, signer, trusted, note.cosign(cp.note, note.new_signer(stranger_skey), 1))
    other = note.sign_note(note.Checkpoint(ORIGIN, 4, bytes(32)).text, signer._signer)
    with pytest.raises(CosignatureRejected, match="never signed"):
        accept_cosignature(cps, signer, trusted, note.cosign(other, note.new_signer(w_skey), 1))
    good = note.cosign(cp.note, note.new_signer(w_skey), 1_800_000_000)
    assert accept_cosignature(cps, signer, trusted, good) == ["it.healthgov.example/witness"]
    assert accept_cosignature(cps, signer, trusted, good) == ["it.healthgov.example/witness"]  # idempotent
    published = cps.published(cp)
    assert note.verify_cosignature(published, w_vkey) == 1_800_000_000
    assert published.count("\u2014 ") == 2

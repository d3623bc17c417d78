"""verify_log over an in-memory log: what a regulator's check catches, and what it names."""

from __future__ import annotations

from services.tlog import merkle, note
from services.tlog.verify import MemorySource, verify_log
from tests.unit.audit.conftest import SignLog
from tests.unit.audit.factory import ORIGIN, entry

SIZES = [3, 8, 13, 20]


def _log(n: int = 20) -> list[bytes]:
    return [entry() for _ in range(n)]


def test_an_intact_log_verifies(sign_log: SignLog, log_keys: tuple[note.Signer, str]) -> None:
    entries = _log()
    report = verify_log(MemorySource(entries, sign_log(entries, SIZES)), log_keys[1])
    assert report.ok, report.problems
    assert (report.entries, report.checkpoints, report.bad_checkpoint) == (20, 4, None)


def test_an_edited_entry_is_named_by_index(sign_log: SignLog, log_keys: tuple[note.Signer, str]) -> None:
    entries = _log()
    checkpoints = sign_log(entries, SIZES)
    stored_leaves = [merkle.leaf_hash(e) for e in entries]  # the tree as it was signed
    edited = list(entries)
    edited[10] = edited[10].replace(b"dr-wang", b"dr-evil")
    report = verify_log(MemorySource(edited, checkpoints, stored_leaves), log_keys[1])
    assert not report.ok
    assert report.first_bad_entry == 10
    assert report.problems[0] == "first bad entry: index 10"
    assert report.bad_checkpoint == 13  # the first checkpoint covering index 10
    assert "checkpoint at size 20 no longer matches the entries" in report.problems


def test_without_the_signed_tree_the_entry_cannot_be_named(sign_log: SignLog,
                                                           log_keys: tuple[note.Signer, str]) -> None:
    entries = _log()
    checkpoints = sign_log(entries, SIZES)
    edited = list(entries)
    edited[4] = entry()
    report = verify_log(MemorySource(edited, checkpoints), log_keys[1])
    assert report.first_bad_entry is None and report.bad_checkpoint == 8
    assert any("cannot be named" in p for p in report.problems)


def test_a_deleted_tail_names_the_checkpoint_that_no_longer_matches(sign_log: SignLog,
                                                                    log_keys: tuple[note.Signer, str]) -> None:
    entries = _log()
    checkpoints = sign_log(entries, SIZES)
    report = verify_log(MemorySource(entries[:15], checkpoints, [merkle.leaf_hash(e) for e in entries]),
                        log_keys[1])
    assert report.bad_checkpoint == 20
    assert ("checkpoint at size 20 no longer matches: the log has only 15 entries (entries 15..19 are gone)"
            in report.problems)
    assert not any("size 13" in p for p in report.problems)


def test_a_checkpoint_signed_by_another_key_is_rejected(sign_log: SignLog, log_keys: tuple[note.Signer, str]) -> None:
    entries = _log(8)
    forger = note.new_signer(note.generate_key(ORIGIN)[0])
    forged = note.sign_note(note.Checkpoint(ORIGIN, 8, merkle.root_hash(entries)).text, forger)
    report = verify_log(MemorySource(entries, [*sign_log(entries, [3]), forged]), log_keys[1])
    assert any("signature does not verify" in p for p in report.problems)


def test_two_signed_roots_for_one_size_are_a_fork(sign_log: SignLog, log_keys: tuple[note.Signer, str]) -> None:
    entries = _log(8)
    other = [entry() for _ in range(8)]
    report = verify_log(MemorySource(entries, sign_log(entries, [8]) + sign_log(other, [8])), log_keys[1])
    assert any("a fork" in p for p in report.problems)


class ForgedProofs(MemorySource):
    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        proof = super().consistency_proof(first, second)
        return [bytes(32), *proof[1:]]


def test_a_forged_consistency_proof_is_rejected(sign_log: SignLog, log_keys: tuple[note.Signer, str]) -> None:
    entries = _log()
    report = verify_log(ForgedProofs(entries, sign_log(entries, SIZES)), log_keys[1])
    assert any("is not consistent with checkpoint" in p for p in report.problems)


def test_cosignatures_are_counted_and_a_bad_one_is_a_problem(
        sign_log: SignLog, log_keys: tuple[note.Signer, str], witness_keys: tuple[note.Signer, str]) -> None:
    entries = _log()
    checkpoints = sign_log(entries, SIZES)
    checkpoints[1] = note.cosign(checkpoints[1], witness_keys[0], 1_800_000_000)
    report = verify_log(MemorySource(entries, checkpoints), log_keys[1], [witness_keys[1]])
    assert report.ok and report.cosignatures == {"test.healthgov.example/witness": 1}
    # Same witness line moved onto another checkpoint: it no longer verifies.
    line = checkpoints[1].rsplit("\n", 2)[-2] + "\n"
    checkpoints[2] += line
    report = verify_log(MemorySource(entries, checkpoints), log_keys[1], [witness_keys[1]])
    assert any("bad cosignature" in p for p in report.problems)


def test_the_in_memory_call_shape_still_works(sign_log: SignLog, log_keys: tuple[note.Signer, str]) -> None:
    entries = _log(5)
    report = verify_log(entries=entries, checkpoints=sign_log(entries, [5]), verifier_key=log_keys[1])
    assert report.ok and report.entries == 5

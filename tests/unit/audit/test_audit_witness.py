"""The witness's decisions, against an in-memory log that can lie (pure logic; the real process
is tested against the real service in tests/integration/audit/test_witness_process.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.tlog import merkle, note
from services.tlog.verify import MemorySource
from services.tlog.witness import Witness, WitnessAlarm, WitnessRefused, load_state
from tests.unit.audit.factory import ORIGIN, entry


class FakeLog:
    """A log the test steers: its entries, which checkpoint it shows, what it does with cosignatures."""

    def __init__(self, signer: note.Signer, vkey: str) -> None:
        self.signer, self.vkey = signer, vkey
        self.entries: list[bytes] = []
        self.shown: str = ""
        self.submitted: list[str] = []
        self.fail_submit = False
        self.forge_proof = False

    def grow(self, n: int) -> None:
        self.entries += [entry() for _ in range(n)]
        self.show(self.entries)

    def show(self, entries: list[bytes], signer: note.Signer | None = None) -> None:
        text = note.Checkpoint(ORIGIN, len(entries), merkle.root_hash(entries)).text
        self.shown = note.sign_note(text, signer or self.signer)

    def checkpoint(self) -> str:
        return self.shown

    def verifier_key(self) -> str:
        return self.vkey

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        proof = MemorySource(self.entries, []).consistency_proof(first, second)
        return [bytes(32), *proof[1:]] if self.forge_proof else proof

    def submit(self, cosigned: str) -> None:
        if self.fail_submit:
            raise ConnectionError("log unreachable")
        self.submitted.append(cosigned)


@pytest.fixture
def setup(tmp_path: Path, log_keys: tuple[note.Signer, str],
          witness_keys: tuple[note.Signer, str]) -> tuple[FakeLog, Witness, Path]:
    log = FakeLog(*log_keys)
    state = tmp_path / "witness" / "state.json"
    return log, Witness(signer=witness_keys[0], state_path=state, log=log, clock=lambda: 1_800_000_000.0), state


def test_cosigns_each_consistent_growth(setup, witness_keys) -> None:  # type: ignore[no-untyped-def]
    log, w, state = setup
    log.grow(5)
    assert w.step().cosigned
    log.grow(9)
    result = w.step()
    assert result.cosigned and result.size == 14
    assert not w.step().cosigned  # nothing new: nothing cosigned twice
    assert len(log.submitted) == 2
    assert note.verify_cosignature(log.submitted[-1], witness_keys[1]) == 1_800_000_000
    assert load_state(state).size == 14  # type: ignore[union-attr]


def test_a_forged_consistency_proof_raises_the_alarm_for_good(setup) -> None:  # type: ignore[no-untyped-def]
    log, w, state = setup
    log.grow(6)
    w.step()
    log.grow(4)
    log.forge_proof = True
    with pytest.raises(WitnessAlarm, match="does not extend"):
        w.step()
    saved = load_state(state)
    assert saved and saved.alarm and saved.evidence and saved.size == 6
    log.forge_proof = False
    with pytest.raises(WitnessAlarm):  # even an honest-looking log is not cosigned again
        w.step()
    assert len(log.submitted) == 1


def test_a_rewritten_history_is_a_fork(setup) -> None:  # type: ignore[no-untyped-def]
    log, w, _ = setup
    log.grow(6)
    w.step()
    log.entries = [entry() for _ in range(6)]  # same size, other entries, signed by the same key
    log.show(log.entries)
    with pytest.raises(WitnessAlarm, match="two roots"):
        w.step()


def test_a_rollback_or_a_foreign_signature_is_refused_without_alarm(setup) -> None:  # type: ignore[no-untyped-def]
    log, w, state = setup
    log.grow(8)
    w.step()
    log.show(log.entries[:5])
    with pytest.raises(WitnessRefused, match="rollback"):
        w.step()
    log.show(log.entries, signer=note.new_signer(note.generate_key(ORIGIN)[0]))
    with pytest.raises(WitnessRefused, match="pinned log key"):
        w.step()
    saved = load_state(state)
    assert saved and saved.alarm is None and saved.size == 8


def test_state_is_durable_before_the_cosignature_leaves(setup) -> None:  # type: ignore[no-untyped-def]
    log, w, state = setup
    log.grow(3)
    log.fail_submit = True
    with pytest.raises(ConnectionError):
        w.step()
    saved = load_state(state)
    assert saved and saved.size == 3 and not saved.submitted
    log.fail_submit = False
    assert w.step().cosigned  # handed over on the next step
    assert len(log.submitted) == 1


def test_a_pinned_key_cannot_be_swapped(setup, witness_keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log, w, state = setup
    log.grow(2)
    w.step()
    _, other = note.generate_key(ORIGIN)
    swapped = Witness(signer=witness_keys[0], state_path=state, log=log, log_key=other)
    with pytest.raises(WitnessRefused, match="pinned"):
        swapped.step()

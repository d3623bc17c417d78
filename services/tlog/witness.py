"""The witness: an independent party that cosigns the log's checkpoints (C2SP tlog-witness).

A witness runs as its own process with its own Ed25519 key. It pins the log's
verifier key and remembers the last checkpoint it cosigned. Each step it
fetches the log's current checkpoint, checks the log's signature, asks the log
for a consistency proof from the checkpoint it remembers, and verifies it. Only
then does it store the new checkpoint (durably, before anything leaves) and
cosign it (C2SP tlog-cosignature, ``cosignature/v1``), handing the cosignature
back to the log, which publishes it next to the checkpoint.

So the log cannot show one history to the witness and another to anyone else
(a split view), and cannot rewrite what the witness already cosigned, without
the witness noticing. A checkpoint that does not extend the remembered one is a
*fork*: the witness writes the evidence to its state file, refuses to cosign
anything from this log again, and says so (``WitnessAlarm``). A smaller
checkpoint than the remembered one (a rollback, or a lagging replica) is
refused but not an alarm. Network trouble is neither: the next step retries.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from services.tlog import merkle, note


class WitnessAlarm(Exception):
    """The log presented two incompatible histories; the witness will not cosign again."""


class WitnessRefused(Exception):
    """This checkpoint cannot be cosigned (bad signature, rollback); nothing was changed."""


class LogClient(Protocol):
    """What a witness needs from a log (``HttpLog`` speaks to the audit service)."""

    def checkpoint(self) -> str: ...
    def verifier_key(self) -> str: ...
    def consistency_proof(self, first: int, second: int) -> list[bytes]: ...
    def submit(self, cosigned: str) -> None: ...


@dataclass
class WitnessState:
    """What the witness remembers about one log; stored as JSON next to nothing else."""

    log_key: str
    size: int = 0
    root: str = base64.b64encode(merkle.EMPTY_ROOT).decode()
    checkpoint: str = ""
    submitted: bool = True
    alarm: str | None = None
    evidence: dict[str, object] | None = None


def load_state(path: Path) -> WitnessState | None:
    if not path.exists():
        return None
    return WitnessState(**json.loads(path.read_text()))


def save_state(path: Path, state: WitnessState) -> None:
    """Write atomically and durably: a cosignature never leaves before its state is on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # two witness processes never share a half-written file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(state), fh, indent=2)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class StepResult:
    size: int
    cosigned: bool  # a new cosignature was made and handed to the log


class Witness:
    def __init__(self, *, signer: note.Signer, state_path: Path, log: LogClient, log_key: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if signer.alg != note.ALG_COSIGNATURE_V1:
            raise ValueError("a witness key must be a cosignature/v1 (alg 0x04) key")
        self.signer = signer
        self.state_path = state_path
        self.log = log
        self.log_key = log_key
        self.clock = clock

    @property
    def verifier_key(self) -> str:
        return self.signer.verifier().vkey

    def _state(self) -> WitnessState:
        state = load_state(self.state_path)
        if state is None:
            # Pin the log's key: given by the operator, or trusted on first use.
            state = WitnessState(log_key=self.log_key or self.log.verifier_key().strip())
            save_state(self.state_path, state)
        if self.log_key is not None and self.log_key != state.log_key:
            raise WitnessRefused("the configured log key differs from the one this witness pinned")
        if state.alarm:
            raise WitnessAlarm(state.alarm)
        return state

    def _alarm(self, state: WitnessState, why: str, evidence: dict[str, object]) -> WitnessAlarm:
        state.alarm = why
        state.evidence = evidence
        save_state(self.state_path, state)
        return WitnessAlarm(why)

    def step(self) -> StepResult:
        """Fetch, verify and cosign the log's current checkpoint; see the module docstring."""
        state = self._state()
        text = self.log.checkpoint()
        verifier = note.new_verifier(state.log_key)
        try:
            opened = note.open_note(text, [verifier])
            cp = note.open_checkpoint(text, verifier)
        except note.NoteError as exc:
            raise WitnessRefused(f"checkpoint not signed by the pinned log key: {exc}") from exc
        old_root = base64.b64decode(state.root)
        if cp.size < state.size:
            raise WitnessRefused(f"rollback: the log offers size {cp.size}, this witness cosigned {state.size}")
        if cp.size == state.size and cp.root_hash != old_root:
            raise self._alarm(state, f"fork: two roots for size {cp.size}",
                              {"cosigned": state.checkpoint, "offered": text})
        if cp.size > state.size and state.size > 0:
            proof = self.log.consistency_proof(state.size, cp.size)
            try:
                merkle.verify_consistency(state.size, cp.size, proof, old_root, cp.root_hash)
            except merkle.ProofError as exc:
                raise self._alarm(state, f"fork: size {cp.size} does not extend the cosigned size {state.size}: {exc}",
                                  {"cosigned": state.checkpoint, "offered": text,
                                   "proof": [base64.b64encode(h).decode() for h in proof]}) from exc
        if cp.size == state.size and state.submitted:
            return StepResult(cp.size, cosigned=False)
        state.size, state.root, state.checkpoint, state.submitted = (
            cp.size, base64.b64encode(cp.root_hash).decode(), text, False)
        save_state(self.state_path, state)
        cosigned = note.sign_note(note.Note(opened.text, opened.sigs), self.signer, timestamp=int(self.clock()))
        self.log.submit(cosigned)
        state.submitted = True
        save_state(self.state_path, state)
        return StepResult(cp.size, cosigned=True)

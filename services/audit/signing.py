"""The log's signing identity: turns (size, root) into a C2SP signed checkpoint."""

from __future__ import annotations

from services.tlog import note


class LogSigner:
    """Signs checkpoints with the log's Ed25519 key; the key name is the log origin."""

    def __init__(self, origin: str, private_seed: bytes, _public: bytes | None = None) -> None:
        self.origin = origin
        skey, self.verifier_key = note.generate_key(origin, seed=private_seed)
        self._signer = note.new_signer(skey)
        self.verifier = note.new_verifier(self.verifier_key)

    def sign(self, size: int, root: bytes) -> str:
        return note.sign_note(note.Checkpoint(self.origin, size, root).text, self._signer)

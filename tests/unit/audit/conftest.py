"""Fixtures for the audit unit tests: a log key, a witness key, signed checkpoints."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.tlog import merkle, note
from tests.unit.audit.factory import ORIGIN


@pytest.fixture(scope="session")
def log_keys() -> tuple[note.Signer, str]:
    skey, vkey = note.generate_key(ORIGIN)
    return note.new_signer(skey), vkey


@pytest.fixture(scope="session")
def witness_keys() -> tuple[note.Signer, str]:
    skey, vkey = note.generate_key("test.healthgov.example/witness", note.ALG_COSIGNATURE_V1)
    return note.new_signer(skey), vkey


SignLog = Callable[[list[bytes], list[int]], list[str]]


@pytest.fixture
def sign_log(log_keys: tuple[note.Signer, str]) -> SignLog:
    """Checkpoint notes, signed by the test log key, over the given entries at the given sizes."""
    signer, _ = log_keys

    def make(entries: list[bytes], sizes: list[int]) -> list[str]:
        return [note.sign_note(note.Checkpoint(ORIGIN, n, merkle.root_hash(entries[:n])).text, signer)
                for n in sizes]

    return make

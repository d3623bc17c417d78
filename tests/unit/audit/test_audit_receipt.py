"""Receipts verify offline, and every way of forging one fails."""

from __future__ import annotations

import base64

import orjson

from services.tlog import merkle, note, receipt
from tests.unit.audit.conftest import SignLog
from tests.unit.audit.factory import entry


def _receipt(sign_log: SignLog, index: int = 5, size: int = 11) -> tuple[dict, list[bytes]]:
    entries = [entry() for _ in range(size)]
    cp = sign_log(entries, [size])[0]
    event_id = orjson.loads(entries[index])["event_id"]
    doc = receipt.build(event_id=event_id, index=index, entry=entries[index],
                        proof=merkle.inclusion_proof(entries, index), checkpoint=cp, verifier_key="ignored")
    return doc, entries


def test_a_receipt_verifies_offline(sign_log: SignLog, log_keys: tuple[note.Signer, str]) -> None:
    doc, _ = _receipt(sign_log)
    check = receipt.verify(doc, log_keys[1])
    assert check.ok, check.problems
    assert check.size == 11 and check.event and check.event["event_id"] == doc["event_id"]


def test_tampered_receipts_fail(sign_log: SignLog, log_keys: tuple[note.Signer, str]) -> None:
    doc, entries = _receipt(sign_log)
    forged_entry = {**doc, "entry": base64.b64encode(entries[5].replace(b"TREAT", b"HLEGAL")).decode()}
    other_index = {**doc, "index": 4}
    other_event = {**doc, "event_id": "00000000-0000-7000-8000-000000000000"}
    short_proof = {**doc, "proof": doc["proof"][:-1]}
    for bad in (forged_entry, other_index, other_event, short_proof):
        check = receipt.verify(bad, log_keys[1])
        assert not check.ok and check.problems


def test_the_key_inside_a_receipt_is_never_trusted(sign_log: SignLog, log_keys: tuple[note.Signer, str]) -> None:
    doc, _ = _receipt(sign_log)
    _, other_vkey = note.generate_key("test.healthgov.example/audit")
    assert not receipt.verify({**doc, "verifier_key": other_vkey}, other_vkey).ok
    assert receipt.verify({**doc, "verifier_key": other_vkey}, log_keys[1]).ok


def test_a_required_witness_must_have_cosigned(sign_log: SignLog, log_keys: tuple[note.Signer, str],
                                               witness_keys: tuple[note.Signer, str]) -> None:
    doc, _ = _receipt(sign_log)
    assert not receipt.verify(doc, log_keys[1], [witness_keys[1]]).ok
    cosigned = {**doc, "checkpoint": note.cosign(doc["checkpoint"], witness_keys[0], 1_800_000_000)}
    check = receipt.verify(cosigned, log_keys[1], [witness_keys[1]])
    assert check.ok and check.witnesses == ["test.healthgov.example/witness"]

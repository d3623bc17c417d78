"""Receipts: one JSON document per event that proves, offline, that the event is in the log.

A receipt carries the event's exact logged bytes, its leaf index, an RFC 9162
inclusion proof and the signed checkpoint (with any witness cosignatures) the
proof leads to. Checking it needs no network and no trust in the server: only
the log's verifier key, obtained once from a trusted place (the published
``/verifier-key``), and optionally the witnesses' keys.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.tlog import merkle, note

RECEIPT_SCHEMA = "healthgov.audit.receipt.v1"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def build(*, event_id: str, index: int, entry: bytes, proof: Sequence[bytes], checkpoint: str,
          verifier_key: str) -> dict[str, Any]:
    """The receipt document (JSON-ready)."""
    return {"schema": RECEIPT_SCHEMA, "event_id": event_id, "index": index, "entry": _b64(entry),
            "proof": [_b64(h) for h in proof], "checkpoint": checkpoint, "verifier_key": verifier_key}


@dataclass
class ReceiptCheck:
    ok: bool
    problems: list[str] = field(default_factory=list)
    size: int | None = None
    witnesses: list[str] = field(default_factory=list)
    event: dict[str, Any] | None = None


def verify(receipt: dict[str, Any], verifier_key: str, witness_keys: Sequence[str] = ()) -> ReceiptCheck:
    """Check a receipt offline against the log's ``verifier_key`` (and witnesses' keys, if given).

    The key inside the receipt is ignored: a receipt cannot vouch for itself.
    Every given witness must have cosigned the receipt's checkpoint.
    """
    check = ReceiptCheck(ok=False)
    try:
        cp = note.open_checkpoint(receipt["checkpoint"], note.new_verifier(verifier_key))
        entry = base64.b64decode(receipt["entry"], validate=True)
        proof = [base64.b64decode(h, validate=True) for h in receipt["proof"]]
        index = int(receipt["index"])
        check.size = cp.size
        merkle.verify_inclusion(merkle.leaf_hash(entry), index, cp.size, proof, cp.root_hash)
        event = orjson.loads(entry)
        if event.get("event_id") != receipt.get("event_id"):
            check.problems.append("the logged event has a different event id than the receipt names")
        check.event = event
    except (note.NoteError, merkle.ProofError, KeyError, TypeError, ValueError) as exc:
        check.problems.append(f"{type(exc).__name__}: {exc}")
        return check
    for key in witness_keys:
        try:
            note.verify_cosignature(receipt["checkpoint"], key)
            check.witnesses.append(key.split("+", 1)[0])
        except note.NoteError as exc:
            check.problems.append(f"witness {key.split('+', 1)[0]} did not cosign: {exc}")
    check.ok = not check.problems
    return check

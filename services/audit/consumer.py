"""Kafka entrypoint of audit: append ``audit.events.v1`` to the Merkle log.

The topic has one partition, so the log has one total order. A batch is one
database transaction; offsets are committed only after it. Appends skip event
ids already logged, so redelivery never duplicates an entry.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import ValidationError

from services.audit.log import MerkleLog
from services.contracts.events import AuditEvent

log = logging.getLogger(__name__)


class AuditHandler:
    def __init__(self, merkle_log: MerkleLog) -> None:
        self.log = merkle_log
        self.rejected = 0

    def __call__(self, records: list[Any]) -> None:
        bodies: list[bytes] = []
        for rec in records:
            try:
                event = AuditEvent.model_validate(orjson.loads(rec.value))
            except (orjson.JSONDecodeError, ValidationError) as exc:
                # Not an event: never silently dropped, but it cannot enter the log.
                self.rejected += 1
                log.error("audit: rejected offset %s: %s", rec.offset, exc)
                continue
            bodies.append(event.canonical())
        if bodies:
            self.log.append(bodies)

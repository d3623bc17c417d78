"""Kafka entrypoint of the consent registry: apply ``consent.changes.v1``.

One batch is one database transaction; the consumer loop commits offsets only
after it. Applying is idempotent: a change whose ``change_id`` is already
stored is skipped, so redelivery never duplicates. A change for an erased
patient is dropped (its content died with the data key); a message that
cannot be read, or that conflicts with a version already stored, goes to the
dead-letter topic with the reason, and the consumer moves on.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import select

from services.adapters import crypto
from services.adapters.kafka import Message, Producer
from services.adapters.sql import UnitOfWork
from services.contracts.events import ConsentChange, DeadLetter
from services.contracts.topics import INGEST_DEADLETTER
from services.records.store import ConsentRow
from services.records.vault import Shredded, Vault

log = logging.getLogger(__name__)


class ConsentChangeHandler:
    def __init__(self, *, engine: Engine, vault: Vault, producer: Producer) -> None:
        self.engine = engine
        self.vault = vault
        self.producer = producer
        self.applied = 0

    def __call__(self, records: list[Any]) -> None:
        dead: list[Message] = []
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            for rec in records:
                reason = self._apply(s, rec.value)
                if reason:
                    log.warning("consent change %s:%s@%s dead-lettered: %s", rec.topic, rec.partition, rec.offset,
                                reason)
                    dl = DeadLetter(topic=rec.topic, partition=rec.partition, offset=rec.offset, reason=reason,
                                    original=crypto.b64e(rec.value))
                    dead.append(Message(INGEST_DEADLETTER.name, dl.model_dump_json(by_alias=True).encode(), rec.key))
            if dead:
                self.producer.send_all(dead)  # before the commit: nothing is lost if this fails
            uow.commit()

    def _apply(self, s: Any, value: bytes) -> str | None:
        """Store one change; return why it cannot be applied, or None."""
        try:
            change = ConsentChange.model_validate(orjson.loads(value))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            return f"not a consent change: {exc}"
        if s.exec(select(ConsentRow.pk).where(ConsentRow.change_id == change.change_id)).first() is not None:
            return None  # redelivery
        try:
            consent = self.vault.open_change(s, change.patient, change.change_id, crypto.b64d(change.sealed))
            dk = self.vault.data_key(s, change.patient)
        except Shredded:
            log.info("consent change %s for an erased patient dropped", change.change_id)
            return None
        except (KeyError, crypto.DecryptionError, ValueError) as exc:
            return f"sealed consent rejected: {exc!r}"
        try:
            version = int(consent["meta"]["versionId"])
        except (KeyError, TypeError, ValueError):
            return "consent without meta.versionId"
        rival = s.exec(select(ConsentRow.change_id).where(ConsentRow.consent_index == change.consent_index,
                                                          ConsentRow.version == version)).first()
        if rival is not None:
            return f"version {version} of this consent was already made by change {rival}"
        row = ConsentRow(patient=change.patient, consent_index=change.consent_index, version=version,
                         change_id=change.change_id, ciphertext=b"")
        self.vault.seal_consent(dk, row, consent)
        s.add(row)
        s.flush()
        self.applied += 1
        return None

"""Kafka entrypoint of records: open sealed submissions and store them encrypted.

One batch of messages is one database transaction; offsets are committed by
the consumer loop only after it. Storing is idempotent: a resource whose
content equals its latest version is not stored again, so redelivery never
duplicates. A message that cannot be opened or parsed goes to the dead-letter
topic with the reason.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import select

from services.adapters import crypto
from services.adapters.kafka import Message, Producer
from services.contracts.events import DeadLetter, IngestEnvelope, SealedPayload
from services.contracts.topics import INGEST_DEADLETTER
from services.ingest.service import DIRECTORY_KEY, envelope_aad
from services.records.store import CareLink, IdentifierIndex, Record, UnitOfWork, latest_versions
from services.records.vault import Vault

log = logging.getLogger(__name__)


class Poison(Exception):
    """A message that can never be processed."""


class IngestHandler:
    def __init__(self, *, engine: Engine, vault: Vault, hpke_private: bytes, producer: Producer) -> None:
        self.engine = engine
        self.vault = vault
        self.hpke_private = hpke_private
        self.producer = producer
        self.stored = 0

    def open(self, key: bytes | None, value: bytes) -> tuple[IngestEnvelope, SealedPayload]:
        try:
            env = IngestEnvelope.model_validate(orjson.loads(value))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            raise Poison(f"not an ingest envelope: {exc}") from exc
        aad = envelope_aad(env.submission_id, env.hospital, (key or b"").decode())
        try:
            plain = crypto.open_sealed(crypto.b64d(env.sealed), self.hpke_private, aad)
            return env, SealedPayload.model_validate(orjson.loads(plain))
        except (crypto.DecryptionError, ValueError) as exc:
            raise Poison(f"sealed payload rejected: {exc}") from exc

    def __call__(self, records: list[Any]) -> None:
        opened: list[tuple[IngestEnvelope, SealedPayload]] = []
        dead: list[Message] = []
        for rec in records:
            try:
                opened.append(self.open(rec.key, rec.value))
            except Poison as exc:
                log.warning("dead-letter %s:%s@%s: %s", rec.topic, rec.partition, rec.offset, exc)
                dl = DeadLetter(topic=rec.topic, partition=rec.partition, offset=rec.offset,
                                reason=str(exc), original=crypto.b64e(rec.value))
                dead.append(Message(INGEST_DEADLETTER.name, dl.model_dump_json(by_alias=True).encode(), rec.key))
        if dead:
            self.producer.send_all(dead)
        self.store(opened)

    def store(self, opened: list[tuple[IngestEnvelope, SealedPayload]]) -> None:
        v = self.vault
        items = []
        for env, payload in opened:
            for res, labels, pid in zip(payload.resources, payload.labels, payload.patients, strict=True):
                patient = v.pseudonym(pid) if pid else DIRECTORY_KEY
                rid = v.rid_index(res["resourceType"], str(res.get("id", "")))
                items.append((env, res, labels, patient, rid))
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            latest = latest_versions(s, list({it[4] for it in items}))
            links = {(c.patient, c.hospital) for c in s.exec(select(CareLink).where(
                CareLink.patient.in_({it[3] for it in items}))).all()}  # type: ignore[attr-defined]
            for env, res, labels, patient, rid in items:
                body = orjson.dumps(res, option=orjson.OPT_SORT_KEYS)
                content = v.content_index(body)
                prev = latest.get(rid)
                if prev is not None and prev.content_index == content:
                    continue  # redelivery or identical resubmission
                version = (prev.version + 1) if prev else 1
                res = dict(res)
                res["meta"] = {**res.get("meta", {}), "versionId": str(version),
                               "lastUpdated": datetime.now(UTC).isoformat(), "source": env.hospital}
                row = Record(patient=patient, rtype=res["resourceType"], rid_index=rid, version=version,
                             hospital=env.hospital, content_index=content,
                             submission_id=env.submission_id, ciphertext=b"")
                v.seal_row(v.data_key(s, patient, create=True), row, res, labels)
                s.add(row)
                latest[rid] = row
                self.stored += 1
                if patient != DIRECTORY_KEY and (patient, env.hospital) not in links:
                    s.add(CareLink(patient=patient, hospital=env.hospital))
                    links.add((patient, env.hospital))
                if res["resourceType"] == "Patient":
                    self._index_identifiers(s, patient, res)
            uow.commit()

    def _index_identifiers(self, s: Any, patient: str, res: dict[str, Any]) -> None:
        for ident in res.get("identifier", []) or []:
            if not ident.get("value"):
                continue
            idx = self.vault.identifier_index(ident.get("system", ""), ident["value"])
            exists = s.exec(select(IdentifierIndex).where(
                IdentifierIndex.identifier_index == idx, IdentifierIndex.patient == patient)).first()
            if exists is None:
                s.add(IdentifierIndex(identifier_index=idx, patient=patient))

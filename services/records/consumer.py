"""Kafka entrypoint of records: open sealed submissions and store them encrypted.

One poll's batch of messages is one database transaction; the consumer loop
commits offsets only after it. Storing is idempotent: a resource whose content
equals its latest version is not stored again, so redelivery never
duplicates. A message that cannot be opened or parsed goes to the dead-letter
topic with the reason, and so does one about a patient whose data was erased.

Speed: ingest sends many resources of one patient per message, so there is
one HPKE open per message, one data-key look-up per patient per batch, one
query for the latest versions of the whole batch, and one multi-row INSERT of
all new versions (the ORM unit of work costs more than the encryption).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.adapters import crypto
from services.adapters.kafka import Message, Producer
from services.adapters.sql import UnitOfWork
from services.contracts.events import DeadLetter, IngestEnvelope, SealedPayload
from services.contracts.topics import INGEST_DEADLETTER
from services.ingest.service import DIRECTORY_KEY, envelope_aad
from services.records.store import CareLink, IdentifierIndex, Record
from services.records.vault import Shredded, Vault

log = logging.getLogger(__name__)
IN_CHUNK = 1_000  # bound the size of one IN (...) list


class Poison(Exception):
    """A message that can never be processed."""


@dataclass
class Item:
    """One resource of one opened message, with where it will be stored."""

    message: int  # index of its message in the batch
    env: IngestEnvelope
    resource: dict[str, Any]
    labels: list[str]
    patient: str  # pseudonym, or DIRECTORY_KEY
    rid: str  # blind index of type/id


@dataclass
class _Row:
    """The columns a row's ciphertext is bound to (AAD), without an ORM object per row."""

    patient: str
    rtype: str
    rid_index: str
    version: int
    ciphertext: bytes = b""


def _latest(s: Session, rids: list[str]) -> dict[str, tuple[int, str]]:
    """rid index → (latest version, its content index), without loading ciphertexts."""
    out: dict[str, tuple[int, str]] = {}
    for i in range(0, len(rids), IN_CHUNK):
        query = select(Record.rid_index, Record.version, Record.content_index).where(
            Record.rid_index.in_(rids[i:i + IN_CHUNK]))  # type: ignore[attr-defined]
        for rid, version, content in s.exec(query).all():
            if rid not in out or version > out[rid][0]:
                out[rid] = (version, content)
    return out


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
            payload = SealedPayload.model_validate(orjson.loads(plain))
        except (crypto.DecryptionError, ValueError) as exc:
            raise Poison(f"sealed payload rejected: {exc}") from exc
        if not (len(payload.resources) == len(payload.labels) == len(payload.patients)):
            raise Poison("sealed payload lists differ in length")
        return env, payload

    def _dead(self, rec: Any, reason: str) -> Message:
        log.warning("dead-letter %s:%s@%s: %s", rec.topic, rec.partition, rec.offset, reason)
        dl = DeadLetter(topic=rec.topic, partition=rec.partition, offset=rec.offset,
                        reason=reason, original=crypto.b64e(rec.value))
        return Message(INGEST_DEADLETTER.name, dl.model_dump_json(by_alias=True).encode(), rec.key)

    def __call__(self, records: list[Any]) -> None:
        opened: list[tuple[int, IngestEnvelope, SealedPayload]] = []
        dead: list[Message] = []
        for n, rec in enumerate(records):
            try:
                env, payload = self.open(rec.key, rec.value)
                opened.append((n, env, payload))
            except Poison as exc:
                dead.append(self._dead(rec, str(exc)))
        erased = self.store(opened)
        dead.extend(self._dead(records[n], "patient erased: resources not stored") for n in sorted(erased))
        if dead:
            self.producer.send_all(dead)

    def items(self, opened: list[tuple[int, IngestEnvelope, SealedPayload]]) -> list[Item]:
        v = self.vault
        out: list[Item] = []
        pseudonyms: dict[str, str] = {}  # a message holds one patient's resources: one keyed hash each
        for n, env, payload in opened:
            for res, labels, pid in zip(payload.resources, payload.labels, payload.patients, strict=True):
                if pid and pid not in pseudonyms:
                    pseudonyms[pid] = v.pseudonym(pid)
                out.append(Item(n, env, res, labels, pseudonyms[pid] if pid else DIRECTORY_KEY,
                                v.rid_index(res["resourceType"], str(res.get("id", "")))))
        return out

    def store(self, opened: list[tuple[int, IngestEnvelope, SealedPayload]]) -> set[int]:
        """Store every new version in one transaction; returns messages skipped for erased patients."""
        v = self.vault
        items = self.items(opened)
        erased: set[int] = set()
        with UnitOfWork(self.engine) as uow:
            s = uow.session
            keys: dict[str, crypto.DataKey | None] = {}
            for patient in dict.fromkeys(it.patient for it in items):
                try:
                    keys[patient] = v.data_key(s, patient, create=True)
                except Shredded:
                    keys[patient] = None
            latest = _latest(s, list(dict.fromkeys(it.rid for it in items)))
            links = {(c.patient, c.hospital) for c in s.exec(select(CareLink).where(
                CareLink.patient.in_({it.patient for it in items}))).all()}  # type: ignore[attr-defined]
            stamp = datetime.now(UTC)
            rows: list[dict[str, Any]] = []
            for it in items:
                dk = keys[it.patient]
                if dk is None:
                    erased.add(it.message)
                    continue
                content = v.content_index(orjson.dumps(it.resource, option=orjson.OPT_SORT_KEYS))
                prev = latest.get(it.rid)
                if prev is not None and prev[1] == content:
                    continue  # redelivery or identical resubmission
                version = prev[0] + 1 if prev else 1
                res = dict(it.resource)
                res["meta"] = {**res.get("meta", {}), "versionId": str(version),
                               "lastUpdated": stamp.isoformat(), "source": it.env.hospital}
                row = _Row(patient=it.patient, rtype=res["resourceType"], rid_index=it.rid, version=version)
                v.seal_row(dk, row, res, it.labels)  # type: ignore[arg-type]  # the row's key columns suffice
                rows.append({"patient": it.patient, "rtype": row.rtype, "rid_index": it.rid, "version": version,
                             "hospital": it.env.hospital, "content_index": content,
                             "submission_id": it.env.submission_id, "ciphertext": row.ciphertext,
                             "created_at": stamp})
                latest[it.rid] = (version, content)
                if it.patient != DIRECTORY_KEY and (it.patient, it.env.hospital) not in links:
                    s.add(CareLink(patient=it.patient, hospital=it.env.hospital))
                    links.add((it.patient, it.env.hospital))
                if res["resourceType"] == "Patient":
                    self._index_identifiers(s, it.patient, res)
            if rows:
                s.execute(insert(Record.__table__), rows)  # type: ignore[attr-defined]
            uow.commit()
            self.stored += len(rows)
        return erased

    def _index_identifiers(self, s: Session, patient: str, res: dict[str, Any]) -> None:
        for ident in res.get("identifier", []) or []:
            if not ident.get("value"):
                continue
            idx = self.vault.identifier_index(ident.get("system", ""), ident["value"])
            exists = s.exec(select(IdentifierIndex).where(
                IdentifierIndex.identifier_index == idx, IdentifierIndex.patient == patient)).first()
            if exists is None:
                s.add(IdentifierIndex(identifier_index=idx, patient=patient))
                s.flush()

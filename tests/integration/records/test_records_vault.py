"""The vault on a real database: AAD binding, KEK rotation, crypto-shredding."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from services.adapters import crypto
from services.records.store import ConsentRow, PatientKey, Record
from services.records.vault import Rotation, Shredded, Vault


def put(engine: Any, vault: Vault, patient: str, rtype: str, rid: str, version: int = 1,
        labels: list[str] | None = None) -> int:
    with Session(engine) as s:
        row = Record(patient=patient, rtype=rtype, rid_index=vault.rid_index(rtype, rid), version=version,
                     hospital="gy-hosp-001", content_index=f"c-{rid}-{version}", submission_id="s", ciphertext=b"")
        vault.seal_row(vault.data_key(s, patient, create=True), row,
                       {"resourceType": rtype, "id": rid, "v": version}, labels or [])
        s.add(row)
        s.commit()
        assert row.pk is not None
        return row.pk


def read(engine: Any, vault: Vault, pk: int) -> dict[str, Any]:
    with Session(engine) as s:
        row = s.get(Record, pk)
        assert row is not None
        return vault.open_row(s, row).resource


def move_ciphertext(engine: Any, source: int, target: int) -> None:
    with Session(engine) as s:
        blob = s.get(Record, source).ciphertext  # type: ignore[union-attr]
        s.exec(update(Record).where(Record.pk == target).values(ciphertext=blob))  # type: ignore[call-overload,arg-type]
        s.commit()


def fresh(vault: Vault) -> Vault:
    """The same keys in another process: nothing cached."""
    return Vault(vault.keyring, vault.blind_key, vault.pseudonym_key)


def test_a_ciphertext_moved_to_another_row_does_not_decrypt(engine, vault) -> None:  # type: ignore[no-untyped-def]
    a = put(engine, vault, "p-a", "Condition", "c1", labels=["HIV"])
    b = put(engine, vault, "p-a", "Condition", "c2")  # same patient, same data key
    v2 = put(engine, vault, "p-a", "Condition", "c2", version=2)
    other = put(engine, vault, "p-b", "Condition", "c3")
    assert read(engine, vault, a)["id"] == "c1"
    for source, target in ((a, b), (b, v2), (a, other)):
        move_ciphertext(engine, source, target)
        with pytest.raises(crypto.DecryptionError):
            read(engine, vault, target)
    assert read(engine, vault, a)["id"] == "c1"  # the original row is untouched


def test_a_record_ciphertext_cannot_pass_as_a_consent(engine, vault) -> None:  # type: ignore[no-untyped-def]
    pk = put(engine, vault, "p-a", "Consent", "k1")
    with Session(engine) as s:
        blob = s.get(Record, pk).ciphertext  # type: ignore[union-attr]
        row = ConsentRow(patient="p-a", consent_index=vault.rid_index("Consent", "k1"), version=1,
                         change_id="ch-1", ciphertext=blob)
        s.add(row)
        s.commit()
        with pytest.raises(crypto.DecryptionError):
            vault.open_consent(s, row)
        sealed = vault.seal_change(vault.data_key(s, "p-a"), "p-a", "ch-2", {"resourceType": "Consent"})
        assert vault.open_change(s, "p-a", "ch-2", sealed) == {"resourceType": "Consent"}
        with pytest.raises(crypto.DecryptionError):
            vault.open_change(s, "p-a", "ch-3", sealed)  # bound to its own change id


def test_rotation_rewraps_every_live_key_and_retires_the_old_kek(engine, vault) -> None:  # type: ignore[no-untyped-def]
    old_kek, _ = vault.keyring.active()
    pks = [put(engine, vault, f"p-{n}", "Condition", f"c{n}") for n in range(3)]
    with Session(engine) as s:
        vault.shred(s, "p-2")
        s.commit()
        before = {k.patient: k.wrapped for k in s.exec(select(PatientKey)).all()}
    seen: list[Rotation] = []
    rotation = vault.rotate(engine, seen.append)
    assert seen == [rotation]
    assert rotation.retired == [old_kek] and rotation.rewrapped == 2
    assert vault.keyring.kids() == [rotation.new_kek]
    with pytest.raises(KeyError):
        vault.keyring.get(old_kek)
    with Session(engine) as s:
        keys = {k.patient: k for k in s.exec(select(PatientKey)).all()}
    assert {p: k.kek_id for p, k in keys.items() if k.wrapped} == {"p-0": rotation.new_kek, "p-1": rotation.new_kek}
    assert all(keys[p].wrapped != before[p] for p in ("p-0", "p-1"))
    assert [read(engine, fresh(vault), pk)["id"] for pk in pks[:2]] == ["c0", "c1"]
    with pytest.raises(Shredded):
        read(engine, fresh(vault), pks[2])


def test_an_unaudited_rotation_retires_nothing(engine, vault) -> None:  # type: ignore[no-untyped-def]
    old_kek, _ = vault.keyring.active()
    pk = put(engine, vault, "p-0", "Condition", "c0")

    def broker_down(_r: Rotation) -> None:
        raise RuntimeError("the audit event could not be published")

    with pytest.raises(RuntimeError):
        vault.rotate(engine, broker_down)
    assert old_kek in vault.keyring.kids()  # still there: nothing was retired
    assert read(engine, fresh(vault), pk)["id"] == "c0"
    rotation = vault.rotate(engine)  # the next rotation finishes the job
    assert old_kek in rotation.retired and vault.keyring.kids() == [rotation.new_kek]
    assert read(engine, fresh(vault), pk)["id"] == "c0"


def test_shredding_makes_every_row_of_the_patient_unreadable_everywhere(engine, vault) -> None:  # type: ignore[no-untyped-def]
    pk = put(engine, vault, "p-a", "Condition", "c1")
    kept = put(engine, vault, "p-b", "Condition", "c2")
    elsewhere = fresh(vault)
    assert read(engine, elsewhere, pk)["id"] == "c1"  # another process has the key cached
    with Session(engine) as s:
        assert vault.shred(s, "p-a") is True
        s.commit()
        assert vault.shred(s, "p-a") is False
        key = s.get(PatientKey, "p-a")
        assert key is not None and key.wrapped is None and key.shredded_at is not None
    for v in (vault, elsewhere, fresh(vault)):
        with pytest.raises(Shredded):
            read(engine, v, pk)
    assert read(engine, vault, kept)["id"] == "c2"
    with Session(engine) as s, pytest.raises(Shredded):
        vault.data_key(s, "p-a", create=True)  # new data for an erased patient gets no new key

"""``healthgov keys``: rotate the key-encryption key of the records vault (docs/architecture.md §4).

``rotate`` makes a new KEK, rewraps every patient's data key under it and
retires (destroys) the old KEKs; records are never re-encrypted and stay
readable throughout. The rotation is an AuditEvent of kind ``key_rotation``,
published (acks=all) before any KEK is retired: with the broker down the
rewrap is kept but nothing is retired, and the command fails.
"""

from __future__ import annotations

import getpass
from collections import Counter
from typing import Annotated

import typer
from rich.console import Console
from sqlmodel import Session, select

from services.adapters.audit_log import AuditLog
from services.adapters.kafka import BrokerUnavailable, Producer
from services.adapters.keys import PlatformKeys
from services.contracts.events import Accessor, AuditEvent
from services.records.config import RecordsSettings
from services.records.store import PatientKey, make_engine
from services.records.vault import Rotation, Vault

app = typer.Typer(help="Key management of the records vault.", no_args_is_help=True)
console = Console(stderr=True)
PLATFORM_ORG = "healthgov-records"


def rotation_event(rotation: Rotation, operator: str) -> AuditEvent:
    """The audit record of a rotation: key ids and counts, never key material."""
    return AuditEvent(
        kind="key_rotation",
        accessor=Accessor(id=operator, org=PLATFORM_ORG, org_type="platform", role="key_custodian"),
        details={"new_kek": rotation.new_kek, "retired": rotation.retired, "rewrapped": rotation.rewrapped},
    )


@app.command("rotate")
def rotate(
    operator: Annotated[str, typer.Option(help="Who rotates (named in the audit event).")] = "",
) -> None:
    """New KEK, rewrap every data key, retire the old KEKs, audited."""
    settings = RecordsSettings()
    keys = PlatformKeys(settings.state_dir)
    engine = make_engine(settings.store_url)
    vault = Vault(keys.keyring(), keys.blind_index_key(), keys.pseudonym_key())
    producer = Producer(settings.kafka_bootstrap, "healthgov-keys")
    who = operator or getpass.getuser()
    try:
        log = AuditLog(producer)
        rotation = vault.rotate(engine, lambda r: log.publish(rotation_event(r, who)))
    except BrokerUnavailable as exc:
        console.print(f"[red]the rotation could not be audited ({exc}); no KEK was retired[/red]")
        raise typer.Exit(1) from exc
    finally:
        producer.close()
        engine.dispose()
    console.print(f"active KEK {rotation.new_kek}: {rotation.rewrapped} data keys rewrapped; "
                  f"retired {', '.join(rotation.retired) or 'none'}")


@app.command("status")
def status() -> None:
    """The active KEK, the KEKs held, and how many data keys each wraps."""
    settings = RecordsSettings()
    keyring = PlatformKeys(settings.state_dir).keyring()
    engine = make_engine(settings.store_url)
    with Session(engine) as s:
        rows = s.exec(select(PatientKey.kek_id, PatientKey.wrapped.is_(None))).all()  # type: ignore[union-attr]
    engine.dispose()
    live = Counter(kid for kid, shredded in rows if not shredded)
    active, _ = keyring.active()
    for kid in keyring.kids():
        mark = "active " if kid == active else "       "
        typer.echo(f"{mark}{kid}  {live.get(kid, 0)} data keys")
    typer.echo(f"shredded: {sum(1 for _, shredded in rows if shredded)}")

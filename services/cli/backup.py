"""``healthgov backup``: the whole platform's state copied out, and restored into a fresh stack.

A backup is a directory (the databases, with the audit log inside them, and a
manifest) plus a key file written elsewhere: the keys sealed under the
operator's passphrase (``backup_keys``). Kafka is not copied; ``create`` first
lets every consumer store what the broker has acknowledged (``backup_drain``),
so the backup holds everything acknowledged before it began, and a restored
stack starts on empty topics with nothing owed to it.

``restore`` goes only into a fresh stack: stopped services, no keys in the
state directory, empty databases. It checks every file's digest and opens the
key file before it writes anything, loads each database in one transaction,
and compares the row counts and the audit log's signed tree head with the
manifest. Then ``healthgov stack up`` serves the same records and the same log.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from services.adapters.config import PlatformSettings
from services.cli import backup_db, backup_keys
from services.cli.backup_drain import NotDrained, drain
from services.contracts.topics import AUDIT_EVENTS, CONSENT_CHANGES, INGEST_RESOURCES, QUALITY_REPORTS, Topic

app = typer.Typer(help="Back up the whole platform, and restore it into a fresh stack.", no_args_is_help=True)
console = Console(stderr=True)
FORMAT = "healthgov.backup.v1"
MANIFEST = "manifest.json"
PASSPHRASE_ENV = "HEALTHGOV_BACKUP_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret

KeysOption = Annotated[Path, typer.Option("--keys", help="The sealed key file (kept apart from DIR).")]
PassOption = Annotated[Path | None, typer.Option(
    "--passphrase-file", help=f"A file holding the passphrase (else ${PASSPHRASE_ENV}, else a prompt).")]


def drain_stages() -> list[tuple[str, Topic]]:
    """The platform's consumers in the order their output feeds the next (records publishes audit events)."""
    from services.audit.config import AuditSettings
    from services.oversight.config import OversightSettings
    from services.records.config import RecordsSettings

    records, audit, oversight = RecordsSettings(), AuditSettings(), OversightSettings()
    return [(records.consumer_group, INGEST_RESOURCES), (records.consumer_group + "-consents", CONSENT_CHANGES),
            (oversight.reports_group, QUALITY_REPORTS), (audit.consumer_group, AUDIT_EVENTS),
            (oversight.audit_group, AUDIT_EVENTS)]


def _passphrase(path: Path | None, *, confirm: bool) -> str:
    if path is not None:
        value = path.read_text().rstrip("\n")
    elif os.environ.get(PASSPHRASE_ENV):
        value = os.environ[PASSPHRASE_ENV]
    else:
        value = getpass.getpass("backup passphrase: ")
        if confirm and getpass.getpass("again: ") != value:
            raise typer.BadParameter("the passphrases differ")
    try:
        backup_keys.check_passphrase(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return value


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def create_backup(directory: Path, keys_out: Path, passphrase: str, settings: PlatformSettings,
                  drain_timeout_s: float = 120) -> dict[str, Any]:
    """Drain the consumers, dump every database, seal the keys; the manifest is written last."""
    if _inside(keys_out, directory):
        raise typer.BadParameter("the key file must be kept apart from the backup directory")
    if keys_out.exists():
        raise typer.BadParameter(f"{keys_out} exists; a key file is never overwritten")
    if directory.exists() and any(directory.iterdir()):
        raise typer.BadParameter(f"{directory} is not empty")
    key_files = backup_keys.read_key_files(settings.state_dir / "keys")
    backup_id = str(uuid.uuid4())
    started = time.perf_counter()
    offsets = drain(settings.kafka_bootstrap, drain_stages(), drain_timeout_s,
                    progress=lambda m: console.print(m, style="dim"))
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    databases = [backup_db.dump(db, directory / db.file_name) for db in backup_db.platform_databases()]
    sealed = backup_keys.seal(key_files, passphrase, backup_id)
    keys_out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(keys_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(sealed)
    manifest = {
        "format": FORMAT, "backup_id": backup_id, "created_at": datetime.now(UTC).isoformat(),
        "kafka_drained_to": offsets, "databases": databases,
        "keys": {"files": sorted(key_files), "sha256": hashlib.sha256(sealed).hexdigest()},
        "seconds": round(time.perf_counter() - started, 2),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists():
        raise typer.BadParameter(f"{directory} has no {MANIFEST} (an unfinished or foreign backup)")
    manifest: dict[str, Any] = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise typer.BadParameter(f"{path} is not a {FORMAT} manifest")
    return manifest


def _running_services(settings: PlatformSettings) -> list[str]:
    from services.cli.stack import SERVICES, Stack

    stack = Stack(settings)
    return [name for name in SERVICES if stack.pid(name) is not None]


def restore_backup(directory: Path, keys_in: Path, passphrase: str, settings: PlatformSettings) -> dict[str, Any]:
    """Check everything, then put the keys and databases of ``directory`` into this (fresh) stack."""
    manifest = read_manifest(directory)
    for entry, path in backup_db.iter_files(manifest, directory):
        if not path.exists() or backup_db.sha256_file(path) != entry["sha256"]:
            raise typer.BadParameter(f"{path} is missing or differs from the manifest")
    blob = keys_in.read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest["keys"]["sha256"]:
        raise typer.BadParameter(f"{keys_in} is not the key file of this backup")
    key_files = backup_keys.open_sealed(blob, passphrase, manifest["backup_id"])
    running = _running_services(settings)
    if running:
        raise backup_db.RestoreRefused(f"stop the services first ({', '.join(running)} running)")
    keys_dir = settings.state_dir / "keys"
    if keys_dir.exists() and any(keys_dir.glob("*.json")):
        raise backup_db.RestoreRefused(f"{keys_dir} holds keys already: restore into a fresh state directory")
    targets = {db.services: db for db in backup_db.platform_databases()}
    wanted = [(entry, path, targets.get(tuple(entry["services"]))) for entry, path in
              backup_db.iter_files(manifest, directory)]
    for entry, _, db in wanted:
        if db is None or db.kind != entry["kind"]:
            raise backup_db.RestoreRefused(
                f"this stack's databases do not match the backup's ({entry['kind']} shared by "
                f"{', '.join(entry['services'])}): configure HEALTHGOV_DATABASE_URL as the backed-up stack had it")
        backup_db.ensure_empty(db)
    backup_keys.write_key_files(keys_dir, key_files)
    for entry, path, db in wanted:
        assert db is not None
        backup_db.restore(db, path)
        got = backup_db.facts(db)
        if got["rows"] != entry["rows"] or got["audit"] != entry["audit"]:
            raise RuntimeError(f"the restored database of {', '.join(entry['services'])} differs from the manifest")
    return manifest


@app.command("create")
def create(
    directory: Annotated[Path, typer.Argument(help="A new (or empty) directory for the data.")],
    keys: KeysOption,
    passphrase_file: PassOption = None,
    drain_timeout: Annotated[float, typer.Option(help="Seconds to wait for consumers to catch up.")] = 120,
) -> None:
    """Back up the databases (the audit log included) to DIR and the sealed keys to --keys."""
    settings = PlatformSettings()
    passphrase = _passphrase(passphrase_file, confirm=True)
    try:
        manifest = create_backup(directory, keys, passphrase, settings, drain_timeout)
    except NotDrained as exc:
        console.print(f"[red]no backup taken[/red]: {exc}")
        raise typer.Exit(1) from exc
    for db in manifest["databases"]:
        head = db["audit"]
        log = f", audit log of {head['entries']} entries" if head else ""
        console.print(f"  {db['file']}: {sum(db['rows'].values())} rows in {len(db['rows'])} tables{log}")
    console.print(f"backup {manifest['backup_id']} in {directory} ({manifest['seconds']}s); "
                  f"keys sealed in {keys}: store it apart from the data")


@app.command("restore")
def restore(
    directory: Annotated[Path, typer.Argument(help="A directory written by `healthgov backup create`.")],
    keys: KeysOption,
    passphrase_file: PassOption = None,
) -> None:
    """Restore a backup into a fresh stack (stopped services, empty state directory and databases)."""
    settings = PlatformSettings()
    passphrase = _passphrase(passphrase_file, confirm=False)
    try:
        manifest = restore_backup(directory, keys, passphrase, settings)
    except (backup_keys.KeysUnreadable, backup_db.RestoreRefused) as exc:
        console.print(f"[red]nothing restored[/red]: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"restored backup {manifest['backup_id']} of {manifest['created_at']} into {settings.state_dir}; "
                  "start it with `healthgov stack up`, then check it with `healthgov audit verify`")

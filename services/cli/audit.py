"""``healthgov audit``: check the transparency log from outside, witness it, verify receipts, migrate."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console

from services.adapters.auth import issue_token, load_registry
from services.adapters.config import PlatformSettings
from services.adapters.keys import PlatformKeys
from services.audit import store
from services.audit.config import AuditSettings
from services.tlog import note, receipt
from services.tlog.client import AuditClient
from services.tlog.verify import verify_log
from services.tlog.witness import Witness, WitnessAlarm, WitnessRefused

app = typer.Typer(help="Audit log tools: verify, witness, receipts, database setup.", no_args_is_help=True)
receipt_app = typer.Typer(help="Receipts: one event's proof of inclusion, checked offline.", no_args_is_help=True)
app.add_typer(receipt_app, name="receipt")
console = Console(soft_wrap=True)
WitnessKeys = Annotated[list[str] | None, typer.Option("--witness-key", help="A witness's verifier key (repeat).")]


def _dev_regulator_token(settings: PlatformSettings) -> str:
    """In dev and test, a token of the demo registry's regulator (a real one uses its own key)."""
    if not settings.dev_mode:
        raise typer.BadParameter("outside dev mode pass --token (a regulator's bearer token)")
    orgs = load_registry(settings.registry_file)["orgs"]
    org = next((o for o, info in orgs.items() if info["type"] == "regulator" and not info.get("suspended")), None)
    if org is None:
        raise typer.BadParameter("the registry has no regulator; pass --token")
    private, _ = PlatformKeys(settings.state_dir).org_signer(org)
    return issue_token(org=org, private_key=private, subject="healthgov-verify", audience="audit",
                       role="regulator", purpose="HCOMPL")


@app.command("verify")
def verify(
    url: Annotated[str | None, typer.Option(help="Audit service base URL.")] = None,
    key: Annotated[str | None, typer.Option(help="The log's verifier key (default: ask the log).")] = None,
    witness_key: WitnessKeys = None,
    token: Annotated[str | None, typer.Option(help="A regulator's bearer token (dev/test: minted).")] = None,
) -> None:
    """Fetch every entry and checkpoint, recompute the tree, check signatures and consistency."""
    settings = PlatformSettings()
    started = time.perf_counter()
    client = AuditClient(url or settings.audit_url, token=lambda: token or _dev_regulator_token(settings))
    try:
        vkey = key or client.verifier_key()
        report = verify_log(client, vkey, witness_key or [])
    except httpx.HTTPStatusError as exc:
        console.print(f"[red]✘[/red] the log answered {exc.response.status_code}: {exc.response.text[:300]}")
        raise typer.Exit(1) from exc
    finally:
        client.close()
    cosigned = ", ".join(f"{n}: {c}" for n, c in report.cosignatures.items())
    console.print(f"entries: {report.entries}  checkpoints: {report.checkpoints}"
                  + (f"  cosigned ({cosigned})" if cosigned else "")
                  + f"  in {time.perf_counter() - started:.1f}s")
    if report.ok:
        console.print("[green]OK[/green]: every checkpoint is signed, consistent and matches the entries")
        return
    for problem in report.problems:
        console.print(f"[red]✘[/red] {problem}")
    raise typer.Exit(1)


def _witness_signer(settings: AuditSettings, key_file: Path | None, name: str | None) -> note.Signer:
    if key_file is not None:
        if not key_file.exists():
            skey, _ = note.generate_key(name or settings.witness_name, note.ALG_COSIGNATURE_V1)
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.touch(mode=0o600)
            key_file.write_text(skey + "\n")
        return note.new_signer(key_file.read_text().strip())
    if not settings.dev_mode:
        raise typer.BadParameter("outside dev mode a witness needs its own --key-file")
    seed, _ = PlatformKeys(settings.state_dir).witness_signer()
    return note.Signer(name or settings.witness_name, note.ALG_COSIGNATURE_V1, seed)


@app.command("witness")
def witness(
    url: Annotated[str | None, typer.Option(help="Audit service base URL.")] = None,
    log_key: Annotated[str | None, typer.Option(help="Pin this log key (default: trust on first use).")] = None,
    key_file: Annotated[Path | None, typer.Option(help="This witness's PRIVATE+KEY file (made if missing).")] = None,
    name: Annotated[str | None, typer.Option(help="Witness key name (for a new key).")] = None,
    state_file: Annotated[Path | None, typer.Option(help="Where the witness remembers the log.")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between checks.")] = 5.0,
    once: Annotated[bool, typer.Option(help="Check and cosign once, then exit.")] = False,
) -> None:
    """Run a witness: verify each new checkpoint is consistent with the last one seen, cosign it."""
    settings = AuditSettings()
    signer = _witness_signer(settings, key_file, name)
    client = AuditClient(url or settings.audit_url)
    path = state_file or settings.state_dir / "witness" / f"{signer.name.replace('/', '_')}.json"
    w = Witness(signer=signer, state_path=path, log=client, log_key=log_key)
    console.print(f"witness {w.verifier_key}\nstate   {path}")
    while True:
        try:
            result = w.step()
            if result.cosigned:
                console.print(f"cosigned checkpoint at size {result.size}")
        except WitnessAlarm as exc:
            console.print(f"[red]ALARM[/red]: {exc}; this witness will not cosign this log again")
            raise typer.Exit(3) from exc
        except WitnessRefused as exc:
            console.print(f"[yellow]refused[/yellow]: {exc}")
            if once:
                raise typer.Exit(2) from exc
        except httpx.HTTPStatusError as exc:
            console.print(f"[yellow]the log answered {exc.response.status_code}[/yellow]: {exc.response.text[:300]}")
            if once:
                raise typer.Exit(1) from exc
        except httpx.HTTPError as exc:
            console.print(f"[yellow]log unreachable[/yellow]: {exc}")
            if once:
                raise typer.Exit(1) from exc
        if once:
            return
        time.sleep(interval)


@receipt_app.command("verify")
def receipt_verify(
    path: Annotated[Path, typer.Argument(help="The receipt JSON file (from /receipts/<event id>).")],
    key: Annotated[str | None, typer.Option(help="The log's published verifier key.")] = None,
    witness_key: WitnessKeys = None,
) -> None:
    """Check a receipt offline: the log's signature, the inclusion proof, the witnesses' cosignatures."""
    doc = json.loads(path.read_text())
    if key is None:
        key = doc.get("verifier_key", "")
        console.print("[yellow]note[/yellow]: using the key inside the receipt; compare it with the published "
                      f"/verifier-key: {key}")
    check = receipt.verify(doc, key, witness_key or [])
    if check.ok:
        event = check.event or {}
        console.print(f"[green]OK[/green]: event {event.get('event_id')} ({event.get('kind')}, "
                      f"{event.get('occurred_at')}) is entry {doc.get('index')} of the log at size {check.size}"
                      + (f", cosigned by {', '.join(check.witnesses)}" if check.witnesses else ""))
        return
    for problem in check.problems:
        console.print(f"[red]✘[/red] {problem}")
    raise typer.Exit(1)


@app.command("migrate")
def migrate(
    owner_url: Annotated[str, typer.Option(help="Database URL of the tables' owner.")],
    role: Annotated[str, typer.Option(help="The writer role the service connects as.")] = store.WRITER_ROLE,
    password: Annotated[str | None, typer.Option(envvar="HEALTHGOV_AUDIT_DB_PASSWORD",
                                                 help="Set the writer role's password.")] = None,
) -> None:
    """Create the audit tables, append-only triggers and (PostgreSQL) the SELECT+INSERT writer role."""
    store.migrate(owner_url, writer_role=role if owner_url.startswith("postgresql") else None,
                  writer_password=password)
    if owner_url.startswith("postgresql"):
        url = store.writer_url(owner_url, role, "***" if password else None)
        console.print(f"migrated; run the service with HEALTHGOV_AUDIT_DATABASE_URL={url}")
    else:
        console.print("migrated")

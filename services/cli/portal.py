"""``healthgov portal``: manage portal accounts (patients and regulators)."""

from __future__ import annotations

import gzip
import json
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlmodel import Session

from services.adapters.keys import PlatformKeys
from services.portal.accounts import Account, Accounts
from services.portal.config import PortalSettings
from services.portal.proxies import Proxies

app = typer.Typer(help="Portal accounts.", no_args_is_help=True)
console = Console()


def _accounts(settings: PortalSettings) -> Accounts:
    return Accounts(settings.store_url, PlatformKeys(settings.state_dir).portal_key())


def _proxies(settings: PortalSettings, accounts: Accounts) -> Proxies:
    return Proxies(accounts.engine, PlatformKeys(settings.state_dir).portal_key())


@app.command("link-guardian")
def link_guardian(
    guardian: Annotated[str, typer.Option(help="The guardian's portal username (a patient account).")],
    child: Annotated[str, typer.Option(help="The child's FHIR Patient id.")],
    name: Annotated[str, typer.Option(help="The child's name as the guardian reads it.")],
) -> None:
    """Let a guardian's account read a child's records and access trail (read only, each view audited)."""
    settings = PortalSettings()
    accounts = _accounts(settings)
    with Session(accounts.engine) as s:
        row = s.get(Account, guardian)
    if row is None or row.role != "patient":
        console.print(f"[red]no patient account {guardian!r}[/red]")
        raise typer.Exit(2)
    _proxies(settings, accounts).link(guardian, child, name)
    console.print(f"{guardian} may now act for {name}")


@app.command("add-account")
def add_account(
    username: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="patient or regulator")],
    subject: Annotated[str, typer.Option(help="The patient's FHIR id, or the regulator's user id.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
) -> None:
    """Create or reset an account (the password is stored as an argon2id hash)."""
    try:
        _accounts(PortalSettings()).create(username, password, role, subject)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    console.print(f"account {username} ({role}) saved")


@app.command("demo-accounts")
def demo_accounts(
    fixtures: Annotated[Path, typer.Argument(help="Directory with Patient.*.ndjson.gz")],
) -> None:
    """Create demo accounts (dev only): one per demo patient, plus a regulator; print the passwords."""
    settings = PortalSettings()
    if not settings.dev_mode:
        console.print("[red]refused: demo accounts exist only in dev and test[/red]")
        raise typer.Exit(2)
    accounts = _accounts(settings)
    out = settings.state_dir / "demo-accounts.json"
    known = json.loads(out.read_text()) if out.exists() else {}
    patients = [json.loads(line) for f in sorted(fixtures.glob("Patient.*.ndjson.gz"))
                for line in gzip.decompress(f.read_bytes()).splitlines() if line.strip()]
    wanted = {f"patient{i:02d}": ("patient", p["id"]) for i, p in enumerate(patients, start=1)}
    wanted["inspector"] = ("regulator", "inspector")
    # A guardian (a patient account of their own) and the youngest demo patient, whom they act for.
    adult = next((p for p in patients if str(p.get("birthDate", "")) < "2000"), None)
    child = max(patients, key=lambda p: str(p.get("birthDate", "")), default=None)
    if adult is not None and child is not None and child is not adult:
        wanted["guardian01"] = ("patient", adult["id"])
    for username, (role, subject) in wanted.items():
        password = known.get(username, {}).get("password") or secrets.token_urlsafe(12)
        accounts.create(username, password, role, subject)
        known[username] = {"role": role, "password": password}
    if "guardian01" in wanted and child is not None:
        name = next((" ".join([*n.get("given", []), n.get("family", "")]).strip() for n in child.get("name", [])), "")
        _proxies(settings, accounts).link("guardian01", child["id"], name or child["id"])
        known["guardian01"]["acts_for"] = name
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(known, fh, indent=2)
    for username in ("patient01", "patient02", "guardian01", "inspector"):
        if username in known:
            console.print(f"  {username:10} {known[username]['password']}")
    console.print(f"all demo accounts: {out}")

"""The ``healthgov`` command line: run the stack, mint dev tokens and legal documents, load data, verify the log."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from services.adapters.auth import issue_token, load_registry
from services.adapters.config import PlatformSettings
from services.adapters.documents import ETHICS_APPROVAL, WARRANT, DocumentKind, issue_document
from services.adapters.keys import PlatformKeys
from services.cli import oversight_demo, visits
from services.cli.stack import ComponentFailed, Stack, TopologyMismatch
from services.cli.supervisor import Supervisor, component_lock, write_pidfile

app = typer.Typer(help="healthgov: health data governance platform", no_args_is_help=True)
stack_app = typer.Typer(help="Start, stop and inspect the local platform.", no_args_is_help=True)
dev_app = typer.Typer(help="Development helpers (refused outside dev mode).", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(dev_app, name="dev")
console = Console(stderr=True)


def _register_subapps() -> None:
    from services.cli import audit as audit_cli
    from services.cli import backup as backup_cli
    from services.cli import ingest as ingest_cli
    from services.cli import keys as keys_cli
    from services.cli import portal as portal_cli

    app.add_typer(audit_cli.app, name="audit")
    app.add_typer(backup_cli.app, name="backup")
    app.add_typer(keys_cli.app, name="keys")
    app.add_typer(portal_cli.app, name="portal")
    app.command(name="ingest")(ingest_cli.ingest)
    try:
        from services.cli import policy as policy_cli

        app.add_typer(policy_cli.app, name="policy")
    except ImportError:  # pragma: no cover - policy CLI is optional during development
        pass


@stack_app.command("up")
def stack_up(
    foreground: Annotated[bool, typer.Option(help="Stay in the foreground until Ctrl-C.")] = False,
    brokers: Annotated[int | None, typer.Option(help="Kafka brokers; 3 replicate every topic 3 times "
                                                     "(min.insync.replicas=2). Default: as last started, else 1.")]
    = None,
    records: Annotated[int | None, typer.Option(help="records processes in one consumer group.")] = None,
    ingest: Annotated[int | None, typer.Option(help="ingest processes (stateless replicas).")] = None,
) -> None:
    """Start Kafka, OPA and the services; wait until every health check passes."""
    try:
        stack = Stack().with_topology(brokers, records, ingest)
        stack.save_topology()
    except (ValueError, TopologyMismatch) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("starting", total=len(stack.components))

        def step(name: str) -> None:
            progress.update(task, description=f"starting {name}", advance=0)

        try:
            stack.up(progress=step, started=lambda _name: progress.advance(task))
        except ComponentFailed as exc:
            progress.stop()
            console.print(f"[red]{exc.name} failed to start[/red]; last log lines:\n{exc.tail}")
            stack.down()
            raise typer.Exit(1) from exc
    for name, info in stack.status().items():
        console.print(f"  [green]✔[/green] {name:8} {info['url']}")
    if foreground:
        _wait_for_interrupt(stack)


def _wait_for_interrupt(stack: Stack) -> None:
    stopping = False

    def handler(_sig: int, _frm: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    console.print("healthgov is running; press Ctrl-C to stop.")
    while not stopping:
        time.sleep(0.5)
    console.print("stopping…")
    stack.down()


@stack_app.command("down")
def stack_down() -> None:
    """Stop every component."""
    Stack().down()
    console.print("stopped")


@stack_app.command("restart")
def stack_restart(name: Annotated[str, typer.Argument(help="The component, e.g. ingest or kafka.")]) -> None:
    """Stop one component (or what a crash left of it) and start it again; the others keep running."""
    stack = Stack()
    if name not in stack.components:
        console.print(f"[red]no component {name}[/red]; components: {', '.join(stack.components)}")
        raise typer.Exit(2)
    stack.prepare_state()
    started = time.monotonic()
    try:
        with component_lock(stack.run_dir, name):  # a running supervisor waits for this restart
            stack.stop(name)
            started = time.monotonic()
            stack.start(name)
    except ComponentFailed as exc:
        console.print(f"[red]{name} failed to start[/red]; last log lines:\n{exc.tail}")
        raise typer.Exit(1) from exc
    console.print(f"  [green]✔[/green] {name} restarted in {time.monotonic() - started:.1f}s")


@stack_app.command("supervise")
def stack_supervise(
    interval: Annotated[float, typer.Option(help="Seconds between checks.")] = 1.0,
) -> None:
    """Restart any component of the running stack that crashes, until Ctrl-C (the components keep running)."""
    stack = Stack()
    stopping = False

    def handler(_sig: int, _frm: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    pidfile = write_pidfile(stack.run_dir)
    console.print(f"supervising {', '.join(stack.components)}; Ctrl-C stops the supervisor, not the platform")
    try:
        Supervisor(stack, log=lambda line: console.print(line, highlight=False)).run(interval, lambda: stopping)
    finally:
        if pidfile.read_text().strip() == str(os.getpid()):
            pidfile.unlink(missing_ok=True)


@stack_app.command("status")
def stack_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show each component's pid, health and URL."""
    stack = Stack()
    status = stack.status()
    if as_json:
        typer.echo(json.dumps(status, indent=2))
    else:
        for name, info in status.items():
            mark = "[green]up[/green]" if info["healthy"] else "[red]down[/red]"
            console.print(f"{name:8} {mark:20} {info['url']}")
    if not all(i["healthy"] for i in status.values()):
        raise typer.Exit(1)


def _require_dev(settings: PlatformSettings) -> None:
    if not settings.dev_mode:
        console.print("[red]refused: dev helpers work only with HEALTHGOV_ENV=dev or test[/red]")
        raise typer.Exit(2)


@dev_app.command("orgs")
def dev_orgs(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the demo organisation registry."""
    settings = PlatformSettings()
    registry = load_registry(settings.registry_file)
    if as_json:
        typer.echo(json.dumps(registry, indent=2))
        return
    for org, info in registry["orgs"].items():
        flag = " (suspended)" if info.get("suspended") else ""
        typer.echo(f"{org:20} {info['type']:16} {info['name']}{flag}")


@dev_app.command("token")
def dev_token(
    org: Annotated[str, typer.Option(help="Issuing organisation id.")],
    sub: Annotated[str, typer.Option(help="User id within the organisation.")],
    role: Annotated[str, typer.Option(help="Role, e.g. clinician, officer, researcher.")],
    aud: Annotated[str, typer.Option(help="Audience: ingest, records, audit or portal.")] = "records",
    patient: Annotated[str | None, typer.Option(help="Patient claim (portal only).")] = None,
    purpose: Annotated[str | None, typer.Option(help="PurposeOfUse code.")] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds (at most 300).")] = 120,
) -> None:
    """Print a short-lived JWT signed with a demo organisation's key."""
    settings = PlatformSettings()
    _require_dev(settings)
    registry = load_registry(settings.registry_file)
    if org not in registry["orgs"]:
        console.print(f"[red]unknown organisation {org!r}[/red]")
        raise typer.Exit(2)
    private, _ = PlatformKeys(settings.state_dir).org_signer(org)
    audience: str | list[str] = aud.split(",") if "," in aud else aud
    typer.echo(issue_token(org=org, private_key=private, subject=sub, audience=audience, role=role,
                           patient=patient, purpose=purpose, ttl_s=ttl))


def _print_signed(kind: DocumentKind, issuer: str, to: str, days: float, claims: dict[str, object]) -> None:
    """Print a ``kind`` document for ``to``, signed with the demo key of ``issuer`` (dev mode only)."""
    settings = PlatformSettings()
    key = _issuer_key(settings, issuer, kind.issuer_type, to)
    typer.echo(issue_document(kind, issuer=issuer, private_key=key, to=to, days=days, claims=claims))


def _issuer_key(settings: PlatformSettings, issuer: str, issuer_type: str, to: str) -> bytes:
    """The demo signing key of ``issuer``, refusing an issuer of the wrong kind or an unknown recipient."""
    _require_dev(settings)
    orgs = load_registry(settings.registry_file)["orgs"]
    if orgs.get(issuer, {}).get("type") != issuer_type:
        kinds = ", ".join(sorted(o for o, info in orgs.items() if info.get("type") == issuer_type))
        console.print(f"[red]{issuer!r} is not a registered {issuer_type}[/red] (registered: {kinds})")
        raise typer.Exit(2)
    if to not in orgs:
        console.print(f"[red]unknown organisation {to!r}[/red]")
        raise typer.Exit(2)
    return PlatformKeys(settings.state_dir).org_signer(issuer)[0]


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value is not None else None


@dev_app.command("warrant")
def dev_warrant(
    court: Annotated[str, typer.Option(help="The issuing court (a registry org of type court).")],
    to: Annotated[str, typer.Option(help="The organisation the warrant authorises, e.g. gy-police.")],
    patient: Annotated[str, typer.Option(help="The patient's record id (FHIR Patient id).")],
    days: Annotated[float, typer.Option(help="Days until it expires.")] = 30,
    labels: Annotated[str, typer.Option(help="Sensitive labels it opens, comma-separated (e.g. PSY,HIV).")] = "",
    types: Annotated[str | None, typer.Option(help="Resource types it covers, comma-separated (default: all).")]
    = None,
    sealed_until: Annotated[str | None, typer.Option(help="RFC 3339 date until which the patient is not told.")]
    = None,
) -> None:
    """Print a warrant signed with a demo court's key (a compact JWS for X-Warrant)."""
    claims: dict[str, object] = {"patient": patient, "labels": _csv(labels) or []}
    if types is not None:
        claims["types"] = _csv(types)
    if sealed_until is not None:
        claims["sealed_until"] = sealed_until
    _print_signed(WARRANT, court, to, days, claims)


@dev_app.command("ethics-approval")
def dev_ethics_approval(
    board: Annotated[str, typer.Option(help="The issuing ethics board (a registry org of type ethics_board).")],
    to: Annotated[str, typer.Option(help="The research organisation it approves, e.g. gz-uni-research.")],
    project: Annotated[str, typer.Option(help="The approved project's id.")],
    days: Annotated[float, typer.Option(help="Days until it expires.")] = 365,
) -> None:
    """Print an ethics approval signed with a demo board's key (a compact JWS for X-Ethics-Approval)."""
    _print_signed(ETHICS_APPROVAL, board, to, days, {"project": project})


dev_app.command("admit")(visits.admit_command)
dev_app.command("oversight-demo")(oversight_demo.demo_command)
_register_subapps()


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

__all__ = ["Path", "app"]

"""``healthgov audit``: verify the transparency log from outside, trusting nothing."""

from __future__ import annotations

from typing import Annotated

import httpx
import typer
from rich.console import Console

from services.adapters.config import PlatformSettings
from services.audit.verify import b64, verify_log

app = typer.Typer(help="Audit log tools.", no_args_is_help=True)
console = Console()
PAGE = 10_000


@app.command("verify")
def verify(
    url: Annotated[str | None, typer.Option(help="Audit service base URL.")] = None,
    key: Annotated[str | None, typer.Option(help="The log's verifier key (default: ask the log).")] = None,
) -> None:
    """Fetch every entry and checkpoint, recompute the tree, check signatures and consistency."""
    base = url or PlatformSettings().audit_url
    with httpx.Client(base_url=base, timeout=60) as c:
        vkey = key or c.get("/verifier-key").raise_for_status().text.strip()
        checkpoints = [cp["note"] for cp in c.get("/checkpoints").raise_for_status().json()]
        entries: list[bytes] = []
        while True:
            page = c.get("/entries", params={"start": len(entries), "end": len(entries) + PAGE})
            rows = page.raise_for_status().json()
            for row in rows:
                if row["index"] != len(entries):
                    console.print(f"[red]entry index gap at {len(entries)}[/red]")
                    raise typer.Exit(1)
                entries.append(b64(row["entry"]))
            if len(rows) < PAGE:
                break

        def proof(index: int, size: int) -> list[bytes]:
            r = c.get("/proofs/inclusion", params={"index": index, "size": size}).raise_for_status()
            return [b64(h) for h in r.json()["proof"]]

        report = verify_log(entries=entries, checkpoints=checkpoints, verifier_key=vkey,
                            inclusion_proof=proof)
    console.print(f"entries: {report.entries}  checkpoints: {report.checkpoints}")
    if report.ok:
        console.print("[green]OK[/green]: every checkpoint is signed, consistent and matches the entries")
        return
    for problem in report.problems:
        console.print(f"[red]✘[/red] {problem}")
    raise typer.Exit(1)

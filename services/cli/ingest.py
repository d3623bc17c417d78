"""``healthgov ingest``: load FHIR NDJSON, NDJSON.gz or Bundle files through the ingest API."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.adapters.auth import issue_token
from services.adapters.config import PlatformSettings
from services.adapters.keys import PlatformKeys

console = Console(stderr=True)
CHUNK = 2000  # NDJSON lines per request


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.name.endswith((".ndjson", ".ndjson.gz", ".json"))))
        else:
            out.append(p)
    return out


def _read(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to load.")],
    org: Annotated[str, typer.Option(help="The sending hospital's organisation id.")],
    url: Annotated[str | None, typer.Option(help="Ingest base URL.")] = None,
) -> None:
    """Send FHIR files to the ingest API with a progress bar and a summary."""
    settings = PlatformSettings()
    base = url or settings.ingest_url
    private, _ = PlatformKeys(settings.state_dir).org_signer(org)

    def token() -> str:
        return issue_token(org=org, private_key=private, subject="healthgov-cli", audience="ingest",
                           role="integration")

    jobs: list[tuple[str, bytes, int]] = []
    for f in _files(paths):
        body = _read(f)
        if f.name.endswith(".json"):
            n = len(json.loads(body).get("entry", []))
            jobs.append(("/fhir", body, n))
        else:
            lines = [ln for ln in body.splitlines() if ln.strip()]
            for i in range(0, len(lines), CHUNK):
                chunk = lines[i:i + CHUNK]
                jobs.append(("/fhir/$import", b"\n".join(chunk), len(chunk)))
    total = sum(n for _, _, n in jobs)
    counts: dict[str, int] = {}
    failures = 0
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=120) as client, Progress(
        TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("ingest", total=total)
        for path, body, n in jobs:
            ctype = "application/fhir+json" if path == "/fhir" else "application/fhir+ndjson"
            resp = client.post(path, content=body, headers={
                "Authorization": f"Bearer {token()}", "Content-Type": ctype})
            if resp.status_code != 200:
                failures += n
                console.print(f"[red]{resp.status_code}[/red] {resp.text[:500]}")
            else:
                for entry in resp.json().get("entry", []):
                    rtype = entry["response"]["location"].split("/")[0]
                    counts[rtype] = counts.get(rtype, 0) + 1
            progress.advance(task, n)
    elapsed = time.perf_counter() - started
    accepted = sum(counts.values())
    for rtype, n in sorted(counts.items()):
        console.print(f"  {rtype:22} {n:6}")
    console.print(f"accepted {accepted} of {total} resources in {elapsed:.1f}s "
                  f"({accepted / max(elapsed, 1e-9):.0f}/s); rejected {failures}")
    if failures:
        raise typer.Exit(1)

"""``healthgov ingest``: load FHIR NDJSON(.gz), Bundle (.json) or HL7 v2 (.hl7) files through the ingest API."""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
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
CHUNK = 5000  # NDJSON lines per request
SUFFIXES = (".ndjson", ".ndjson.gz", ".json", ".hl7")


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.name.endswith(SUFFIXES)))
        else:
            out.append(p)
    return out


def _read(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def _jobs(files: list[Path]) -> list[tuple[str, bytes, int, str]]:
    """(path, body, resources, content type) per request."""
    jobs: list[tuple[str, bytes, int, str]] = []
    for f in files:
        body = _read(f)
        if f.name.endswith(".json"):
            jobs.append(("/fhir", body, len(json.loads(body).get("entry", [])), "application/fhir+json"))
        elif f.name.endswith(".hl7"):
            jobs.append(("/hl7v2", body, 1, "x-application/hl7-v2+er7"))
        else:
            lines = body.splitlines()
            for i in range(0, len(lines), CHUNK):
                chunk = lines[i:i + CHUNK]
                jobs.append(("/fhir/$import", b"\n".join(chunk), len(chunk), "application/fhir+ndjson"))
    return jobs


def _wait_for_job(client: httpx.Client, url: str, token: str) -> dict:
    while True:
        r = client.get(url, headers={"Authorization": f"Bearer {token}"})
        if r.status_code != 202:
            return r.json()
        time.sleep(0.5)


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to load.")],
    org: Annotated[str, typer.Option(help="The sending hospital's organisation id.")],
    url: Annotated[str | None, typer.Option(help="Ingest base URL.")] = None,
    use_async: Annotated[bool, typer.Option("--async", help="NDJSON as asynchronous $import jobs.")] = False,
) -> None:
    """Send FHIR or HL7 v2 files to the ingest API with a progress bar and a summary."""
    settings = PlatformSettings()
    base = url or settings.ingest_url
    private, _ = PlatformKeys(settings.state_dir).org_signer(org)

    def token() -> str:
        return issue_token(org=org, private_key=private, subject="healthgov-cli", audience="ingest",
                           role="integration")

    jobs = _jobs(_files(paths))
    total = sum(n for _, _, n, _ in jobs)
    counts: Counter[str] = Counter()
    rejected = 0
    started = time.perf_counter()
    with httpx.Client(base_url=base, timeout=300) as client, Progress(
        TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("ingest", total=total)
        for path, body, n, ctype in jobs:
            headers = {"Authorization": f"Bearer {token()}", "Content-Type": ctype}
            if use_async and path == "/fhir/$import":
                headers["Prefer"] = "respond-async"
            resp = client.post(path, content=body, headers=headers)
            if resp.status_code == 202:
                status = _wait_for_job(client, resp.headers["Content-Location"], token())
                counts.update(status.get("counts", {}))
                rejected += status.get("rejected", 0)
                for err in status.get("errors", [])[:5]:
                    console.print(f"[red]line {err['line']}[/red] {err['issue'][0]['diagnostics']}")
            elif path == "/hl7v2":
                ok = resp.status_code == 200
                counts.update({"HL7v2 message": 1} if ok else {})
                rejected += 0 if ok else 1
                if not ok:
                    console.print(f"[red]{resp.status_code}[/red] {resp.text[:300]!r}")
            elif resp.status_code != 200:
                rejected += n
                console.print(f"[red]{resp.status_code}[/red] {resp.text[:500]}")
            else:
                for entry in resp.json().get("entry", []):
                    answer = entry["response"]
                    if answer["status"].startswith("2"):
                        counts[answer["location"].split("/")[0]] += 1
                    else:
                        rejected += 1
                        console.print(f"[red]{answer['status']}[/red] "
                                      f"{answer['outcome']['issue'][0]['diagnostics']}")
            progress.advance(task, n)
    elapsed = time.perf_counter() - started
    accepted = sum(counts.values())
    for rtype, n in sorted(counts.items()):
        console.print(f"  {rtype:22} {n:6}")
    console.print(f"accepted {accepted} of {total} in {elapsed:.1f}s "
                  f"({accepted / max(elapsed, 1e-9):.0f}/s); rejected {rejected}")
    if rejected:
        raise typer.Exit(1)

"""``healthgov ingest``: load FHIR NDJSON(.gz), Bundle (.json) or HL7 v2 (.hl7) files through the ingest API.

The summary accounts for every resource sent: for each resource type, how many
were sent, accepted and rejected, and every rejection grouped by reason with
its first example (file and line). A rejected line or entry is printed as it
comes back (the first ``--show`` of them) and, with ``--report``, written one
JSON object per line to a file, so a load of hundreds of thousands of
resources can be fixed from its report rather than from a scrolled-away screen.

NDJSON is sent in requests bounded in lines and in bytes (a file of
Provenance resources of a MB each must not become one request over the
server's body limit). A 429 or 503 is retried after its Retry-After; any other
refusal is final and reported.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TextIO

import httpx
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from services.adapters.auth import issue_token
from services.adapters.config import PlatformSettings
from services.adapters.keys import PlatformKeys

console = Console(stderr=True, soft_wrap=True)  # summary lines are read by scripts too: never wrapped
CHUNK = 5000  # NDJSON lines per request, at most
CHUNK_BYTES = 32 * 1024 * 1024  # NDJSON bytes per request, at most (the server takes 128 MiB)
SUFFIXES = (".ndjson", ".ndjson.gz", ".json", ".hl7")
RETRIES = 8
_LINE_PREFIX = re.compile(r"^line \d+: ")
_NUMBER = re.compile(r"\d+")
HL7_TYPE = "HL7v2 message"


@dataclass
class Request:
    """One request to send and, per resource in it, where it came from and its type."""

    path: str
    body: bytes
    ctype: str
    source: str  # file name
    types: list[str]  # resource type of each line / entry, in order
    lines: list[int] = field(default_factory=list)  # NDJSON: the file's line number of each request line


@dataclass
class Tally:
    """Sent, accepted and rejected per type, and rejections grouped by reason (first example kept)."""

    sent: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    shown: int = 0

    def ok(self, rtype: str) -> None:
        self.accepted[rtype] += 1

    def reject(self, rtype: str, where: str, status: int | str, diagnostics: str, code: str = "") -> None:
        """One rejected resource; its reason is the diagnostics without line numbers and sizes."""
        self.rejected[rtype] += 1
        generic = _NUMBER.sub("N", _LINE_PREFIX.sub("", diagnostics))
        reason = f"{status} {code}: {generic}".replace(" :", ":")
        self.reasons[reason] += 1
        self.examples.setdefault(reason, f"{where}: {diagnostics}")

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    def lines(self) -> list[str]:
        """The summary as printed: a table of types, then the reasons."""
        out = [f"  {'resource type':24} {'sent':>8} {'accepted':>9} {'rejected':>9}"]
        for rtype in sorted(set(self.sent) | set(self.accepted) | set(self.rejected)):
            out.append(f"  {rtype:24} {self.sent[rtype]:8} {self.accepted[rtype]:9} {self.rejected[rtype]:9}")
        if self.reasons:
            out.append("rejections by reason (first example of each):")
            for reason, n in self.reasons.most_common():
                out.append(f"  {n:7} x {reason}")
                out.append(f"            e.g. {self.examples[reason]}")
        return out


def patients_first(name: str) -> tuple[bool, str]:
    """Sort key: Patient files before the rest, as a hospital registers a patient before writing about them."""
    return (not name.startswith("Patient."), name)


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = (f for f in p.iterdir() if f.name.endswith(SUFFIXES))
            out.extend(sorted(found, key=lambda f: patients_first(f.name)))
        else:
            out.append(p)
    return out


def _read(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def _type_of(line: bytes) -> str:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "(not JSON)"
    rtype = doc.get("resourceType") if isinstance(doc, dict) else None
    return rtype if isinstance(rtype, str) else "(no resourceType)"


def ndjson_requests(name: str, body: bytes, max_lines: int = CHUNK,
                    max_bytes: int = CHUNK_BYTES) -> Iterator[Request]:
    """A file's lines in requests of at most ``max_lines`` lines and about ``max_bytes`` bytes.

    Blank lines are dropped with their numbers kept, so a reported line is the
    line in the sender's file.
    """
    numbered = [(n, ln) for n, ln in enumerate(body.split(b"\n"), 1) if ln.strip()]
    start = 0
    while start < len(numbered):
        end, size = start, 0
        while end < len(numbered) and end - start < max_lines and (end == start or size + len(numbered[end][1])
                                                                   < max_bytes):
            size += len(numbered[end][1]) + 1
            end += 1
        part = numbered[start:end]
        yield Request("/fhir/$import", b"\n".join(ln for _, ln in part), "application/fhir+ndjson", name,
                      [_type_of(ln) for _, ln in part], [n for n, _ in part])
        start = end


def requests_of(files: list[Path]) -> Iterator[Request]:
    """Requests for every file, read one file at a time."""
    for f in files:
        body = _read(f)
        if f.name.endswith(".json"):
            doc = json.loads(body)
            types = [str((e.get("resource") or {}).get("resourceType", "(no resource)"))
                     for e in doc.get("entry", []) if isinstance(e, dict)]
            yield Request("/fhir", body, "application/fhir+json", f.name, types)
        elif f.name.endswith(".hl7"):
            yield Request("/hl7v2", body, "x-application/hl7-v2+er7", f.name, [HL7_TYPE])
        else:
            yield from ndjson_requests(f.name, body)


def _first_issue(outcome: Any) -> tuple[str, str]:
    issues = outcome.get("issue") if isinstance(outcome, dict) else None
    if isinstance(issues, list) and issues and isinstance(issues[0], dict):
        return str(issues[0].get("diagnostics", "")), str(issues[0].get("code", ""))
    return "", ""


class Sender:
    """Sends requests, retrying what the server says to retry, and tallies every resource's answer."""

    def __init__(self, client: httpx.Client, token: Any, use_async: bool, tally: Tally, show: int,
                 report: TextIO | None) -> None:
        self.client, self.token, self.use_async = client, token, use_async
        self.tally, self.show, self.report = tally, show, report

    def _reject(self, req: Request, index: int, status: int | str, diagnostics: str, code: str = "") -> None:
        rtype = req.types[index] if 0 <= index < len(req.types) else "(unknown)"
        status = str(status)
        where = (f"{req.source} line {req.lines[index] if 0 <= index < len(req.lines) else '?'}"
                 if req.path == "/fhir/$import"
                 else f"{req.source} entry {index}" if req.path == "/fhir" else req.source)
        self.tally.reject(rtype, where, status, diagnostics, code)
        if self.tally.shown < self.show:
            self.tally.shown += 1
            console.print(f"[red]{status}[/red] {where} ({rtype}): {diagnostics[:300]}")
        if self.report is not None:
            self.report.write(orjson.dumps({"file": req.source, "where": where, "type": rtype, "status": status,
                                            "code": code, "diagnostics": diagnostics}).decode() + "\n")

    def post(self, req: Request) -> httpx.Response:
        for attempt in range(RETRIES):
            headers = {"Authorization": f"Bearer {self.token()}", "Content-Type": req.ctype}
            if self.use_async and req.path == "/fhir/$import":
                headers["Prefer"] = "respond-async"
            resp = self.client.post(req.path, content=req.body, headers=headers)
            if resp.status_code not in (429, 503) or attempt == RETRIES - 1:
                return resp
            wait = resp.headers.get("Retry-After", "1")
            time.sleep(min(60.0, float(wait) if wait.replace(".", "", 1).isdigit() else 1.0))
        raise AssertionError("unreachable")

    def send(self, req: Request) -> None:
        self.tally.sent.update(req.types)
        try:
            resp = self.post(req)
        except httpx.HTTPError as exc:
            for i in range(len(req.types)):
                self._reject(req, i, "no answer", f"{type(exc).__name__}: {exc}")
            return
        if resp.status_code == 202 and "Content-Location" in resp.headers:
            self._job(req, resp.headers["Content-Location"])
        elif req.path == "/hl7v2":
            if resp.status_code == 200:
                self.tally.ok(HL7_TYPE)
            else:
                self._reject(req, 0, resp.status_code, resp.text[:300])
        elif resp.status_code != 200:
            diagnostics, code = _first_issue(_json(resp))
            for i in range(len(req.types)):
                self._reject(req, i, resp.status_code, diagnostics or resp.text[:300], code)
        else:
            self._entries(req, _json(resp).get("entry", []))

    def _entries(self, req: Request, entries: list[Any]) -> None:
        for i, entry in enumerate(entries):
            answer = entry.get("response", {}) if isinstance(entry, dict) else {}
            status = str(answer.get("status", ""))
            if status.startswith("2"):
                self.tally.ok(str(answer.get("location", "")).split("/")[0] or req.types[i])
            else:
                diagnostics, code = _first_issue(answer.get("outcome"))
                self._reject(req, i, status.split(" ")[0] or "?", diagnostics, code)

    def _job(self, req: Request, url: str) -> None:
        while True:
            r = self.client.get(url, headers={"Authorization": f"Bearer {self.token()}"})
            if r.status_code != 202:
                break
            time.sleep(0.5)
        status = _json(r)
        counts: dict[str, int] = status.get("counts", {})
        for rtype, n in counts.items():
            self.tally.accepted[rtype] += n
        named = set()
        for err in status.get("errors", []):
            index = int(err.get("line", 0)) - 1
            named.add(index)
            diagnostics, code = _first_issue({"issue": err.get("issue", [])})
            self._reject(req, index, err.get("status", 400), diagnostics, code)
        unnamed = int(status.get("rejected", 0)) - len(named)
        if status.get("status") == "failed" and not counts:
            unnamed = len(req.types) - len(named)
        for _ in range(max(0, unnamed)):  # beyond the job's list of errors: counted, not named
            self.tally.rejected["(not listed by the job)"] += 1
            self.tally.reasons[f"job: {status.get('last_error') or 'errors beyond the listed ones'}"] += 1


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories to load.")],
    org: Annotated[str, typer.Option(help="The sending hospital's organisation id.")],
    url: Annotated[str | None, typer.Option(help="Ingest base URL.")] = None,
    use_async: Annotated[bool, typer.Option("--async", help="NDJSON as asynchronous $import jobs.")] = False,
    show: Annotated[int, typer.Option(help="Rejected lines printed as they come back (all are counted).")] = 20,
    report: Annotated[Path | None, typer.Option(help="Write every rejected line here, one JSON per line.")] = None,
) -> None:
    """Send FHIR or HL7 v2 files to the ingest API with a progress bar and a complete summary."""
    settings = PlatformSettings()
    base = url or settings.ingest_url
    private, _ = PlatformKeys(settings.state_dir).org_signer(org)

    def token() -> str:
        return issue_token(org=org, private_key=private, subject="healthgov-cli", audience="ingest",
                           role="integration")

    files = _files(paths)
    total = sum(_count(f) for f in files)
    tally = Tally()
    started = time.perf_counter()
    out = report.open("w") if report else None
    try:
        with httpx.Client(base_url=base, timeout=600) as client, Progress(
            TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("ingest", total=total)
            sender = Sender(client, token, use_async, tally, show, out)
            for req in requests_of(files):
                sender.send(req)
                progress.advance(task, len(req.types))
    finally:
        if out is not None:
            out.close()
    elapsed = time.perf_counter() - started
    accepted = sum(tally.accepted.values())
    for line in tally.lines():
        console.print(line, highlight=False, markup=False)
    console.print(f"accepted {accepted} of {sum(tally.sent.values())} in {elapsed:.1f}s "
                  f"({accepted / max(elapsed, 1e-9):.0f}/s); rejected {tally.total_rejected}"
                  + (f" (every one in {report})" if report and tally.total_rejected else ""))
    if tally.total_rejected:
        raise typer.Exit(1)


def _count(path: Path) -> int:
    """Resources in a file, for the progress bar (NDJSON: non-blank lines)."""
    if path.name.endswith(".hl7"):
        return 1
    body = _read(path)
    if path.name.endswith(".json"):
        return len(json.loads(body).get("entry", []))
    return sum(1 for ln in body.split(b"\n") if ln.strip())

"""``healthgov policy``: explain access decisions and keep the policy manifest current.

``explain`` asks OPA for ``data.healthgov.access.decision`` on one input document and
prints what was decided, why, and what the recipient must do, in words a person can
read. It asks the OPA server first; if none answers it runs ``opa eval`` on the local
``policies/`` with the demo org registry.

``manifest`` maintains ``policies/healthgov/manifest/data.json``, which every decision
reports as ``policy_version``: ``<version>+<first 12 hex digits of the rule digest>``.
The digest is SHA-256 over the ``sha256sum`` listing of the non-test ``.rego`` files and
the vocabulary data (``healthgov/vocabulary/data.json``), so an auditor can recompute it
with coreutils alone::

    cd policies && find . \\( -name '*.rego' ! -name '*_test.rego' -o -path ./healthgov/vocabulary/data.json \\) \\
        -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum | sha256sum

It also writes that vocabulary data, the codes of ``services/contracts/vocabulary.py``
the policy reads as ``data.healthgov.vocabulary``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from services.contracts.vocabulary import DEIDENTIFY, REASONS, SENSITIVE_LABELS, rego_data

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICIES_DIR = REPO_ROOT / "policies"
MANIFEST_PATH = POLICIES_DIR / "healthgov" / "manifest" / "data.json"
# The codes of services/contracts/vocabulary.py, as the policy reads them (data.healthgov.vocabulary).
VOCABULARY_DATA = Path("healthgov") / "vocabulary" / "data.json"
DEMO_REGISTRY = REPO_ROOT / "deploy" / "demo" / "registry.json"
DECISION_PATH = "healthgov/access/decision"
DEFAULT_OPA_URL = "http://127.0.0.1:8181"

app = typer.Typer(
    help="Access policy: explain a decision, keep the policy manifest current.",
    no_args_is_help=True,
)

# ------------------------------------------------------------ policy manifest


def rule_files(policies_dir: Path = POLICIES_DIR) -> list[Path]:
    """The non-test ``.rego`` files and the vocabulary data under ``policies_dir``, sorted by POSIX path.

    The vocabulary counts as a rule file: a purpose or action added to it changes decisions.
    """
    files = [p for p in policies_dir.rglob("*.rego") if not p.name.endswith("_test.rego")]
    if (policies_dir / VOCABULARY_DATA).is_file():
        files.append(policies_dir / VOCABULARY_DATA)
    return sorted(files, key=lambda p: p.relative_to(policies_dir).as_posix())


def file_digests(policies_dir: Path = POLICIES_DIR) -> dict[str, str]:
    """SHA-256 (hex) of every rule file, keyed by its path relative to ``policies_dir``."""
    return {
        p.relative_to(policies_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in rule_files(policies_dir)
    }


def policy_digest(policies_dir: Path = POLICIES_DIR) -> str:
    """SHA-256 (hex) of the ``sha256sum``-format listing of the sorted rule files.

    Any change to any rule file, or a file added, removed or renamed, changes it.
    """
    listing = "".join(f"{h}  {path}\n" for path, h in file_digests(policies_dir).items())
    return hashlib.sha256(listing.encode()).hexdigest()


def vocabulary_json() -> str:
    """The vocabulary data file's exact text, generated from ``services/contracts/vocabulary.py``."""
    return json.dumps(rego_data(), indent=2, sort_keys=True) + "\n"


def vocabulary_current(policies_dir: Path = POLICIES_DIR) -> bool:
    """Whether the policy's vocabulary data holds exactly the codes Python holds."""
    path = policies_dir / VOCABULARY_DATA
    return path.is_file() and path.read_text(encoding="utf-8") == vocabulary_json()


def write_vocabulary(policies_dir: Path = POLICIES_DIR) -> bool:
    """Write the vocabulary data for the policy; True when it changed."""
    if vocabulary_current(policies_dir):
        return False
    path = policies_dir / VOCABULARY_DATA
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(vocabulary_json(), encoding="utf-8")
    return True


def read_manifest(path: Path = MANIFEST_PATH) -> dict[str, Any]:
    """The manifest document, or an empty one if it does not exist yet."""
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def next_version(current: str | None, today: dt.date) -> str:
    """The release after ``current`` in the ``YYYY.M.N`` scheme.

    ``N`` counts releases within a month and restarts at 1 in a new month.
    """
    prefix = f"{today.year}.{today.month}"
    if current:
        head, _, serial = current.rpartition(".")
        if head == prefix and serial.isdigit():
            return f"{prefix}.{int(serial) + 1}"
    return f"{prefix}.1"


def write_manifest(version: str, policies_dir: Path = POLICIES_DIR,
                   path: Path = MANIFEST_PATH) -> dict[str, Any]:
    """Write the manifest for the current rule files under ``version``; return it."""
    manifest = {
        "version": version,
        "digest": policy_digest(policies_dir),
        "files": file_digests(policies_dir),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


# ------------------------------------------------------------------ evaluation


class PolicyError(RuntimeError):
    """The decision could not be obtained (and no fallback applies)."""


class OpaUnreachable(PolicyError):
    """No OPA server answered at the given URL."""


def load_input(path: Path) -> dict[str, Any]:
    """Read an OPA input document; accepts the bare input or ``{"input": {...}}``."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(doc, dict) and set(doc) == {"input"}:
        doc = doc["input"]
    if not isinstance(doc, dict):
        raise PolicyError(f"{path}: the input must be a JSON object")
    return doc


def decide_via_server(policy_input: dict[str, Any], opa_url: str,
                      timeout: float = 3.0) -> dict[str, Any]:
    """Ask a running OPA server for the decision."""
    url = f"{opa_url.rstrip('/')}/v1/data/{DECISION_PATH}"
    try:
        response = httpx.post(url, json={"input": policy_input}, timeout=timeout)
    except httpx.TransportError as exc:
        raise OpaUnreachable(f"OPA at {opa_url} is unreachable: {exc}") from exc
    if response.status_code != 200:
        raise PolicyError(f"OPA at {opa_url} answered {response.status_code}: {response.text}")
    result = response.json().get("result")
    if not isinstance(result, dict):
        raise PolicyError(f"OPA at {opa_url} has no {DECISION_PATH}: are the policies loaded?")
    return result


def find_opa_binary() -> str | None:
    """The repository's pinned OPA (``.cache/bin/opa``), else ``opa`` on PATH."""
    local = REPO_ROOT / ".cache" / "bin" / "opa"
    if local.exists():
        return str(local)
    return shutil.which("opa")


def decide_via_cli(policy_input: dict[str, Any], policies_dir: Path = POLICIES_DIR,
                   registry: Path = DEMO_REGISTRY) -> dict[str, Any]:
    """Evaluate the decision with ``opa eval`` on local files (no server needed)."""
    opa = find_opa_binary()
    if opa is None:
        raise PolicyError("no OPA server answered and no opa binary was found")
    argv = [
        opa, "eval", "--format", "json", "--stdin-input",
        "--data", str(policies_dir), "--data", f"healthgov.registry:{registry}",
        "data." + DECISION_PATH.replace("/", "."),
    ]
    proc = subprocess.run(argv, input=json.dumps(policy_input), capture_output=True,
                          text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise PolicyError(f"opa eval failed: {proc.stderr.strip() or proc.stdout.strip()}")
    results = json.loads(proc.stdout).get("result") or []
    if not results:
        raise PolicyError("opa eval returned no decision: are the policies complete?")
    decision: dict[str, Any] = results[0]["expressions"][0]["value"]
    return decision


def evaluate(policy_input: dict[str, Any], opa_url: str,
             local: bool = False) -> tuple[dict[str, Any], str]:
    """The decision and where it came from (server URL, or local ``opa eval``)."""
    if not local:
        try:
            return decide_via_server(policy_input, opa_url), f"OPA server {opa_url}"
        except OpaUnreachable:
            pass
    source = f"local opa eval ({_shown(POLICIES_DIR)}/ + {_shown(DEMO_REGISTRY)})"
    return decide_via_cli(policy_input), source


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it."""
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


# ------------------------------------------------------------------- rendering


def _label_list(labels: list[str]) -> str:
    return ", ".join(f"{label} ({SENSITIVE_LABELS.get(label, 'label')})" for label in labels)


def render(decision: dict[str, Any], source: str, policy_input: dict[str, Any],
           console: Console) -> None:
    """Print ``decision`` for a person: verdict, request, reasons, obligations."""
    allowed = decision.get("allow") is True
    subject = policy_input.get("subject") or {}
    resource = policy_input.get("resource") or {}
    verdict = "[bold green]ALLOW[/]" if allowed else "[bold red]DENY[/]"
    who = f"{subject.get('id', '?')} ({subject.get('role', '?')}) of {subject.get('org', '?')}"
    what = f"{resource.get('type', '?')}"
    if resource.get("patient"):
        what += f" of patient {resource['patient']}"
    request = (
        f"{who} [{subject.get('org_type', '?')}] asks to "
        f"{policy_input.get('action', '?')} {what} for purpose {policy_input.get('purpose', '?')}"
    )
    version = escape(str(decision.get("policy_version", "unknown")))
    console.print(Panel(
        f"{verdict}\n{escape(request)}\n\n"
        f"policy version: [bold]{version}[/]\n"
        f"decided by: {escape(source)}",
        title="Access decision", expand=False,
    ))

    console.print("[bold]Why[/]")
    for reason in decision.get("reasons", []):
        text = REASONS.get(reason, "no description")
        console.print(f"  • [cyan]{escape(str(reason))}[/]: {escape(text)}")

    if not allowed:
        console.print("\nNothing is disclosed. The denial is recorded in the audit trail.")
        return

    ob = decision.get("obligations", {})
    table = Table(title="What the records service must do before release", show_header=False)
    table.add_column("obligation", style="bold")
    table.add_column("meaning")
    deid = ob.get("deidentify", "none")
    table.add_row("de-identification", escape(DEIDENTIFY.get(deid, str(deid))))
    redact = ob.get("redact_labels") or []
    table.add_row("withheld labels",
                  escape(_label_list(redact)) if redact else "none: every label is visible")
    if ob.get("notify_patient"):
        after = ob.get("notify_after")
        when = f"not before {after} (warrant seal, at most 90 days)" if after else "at once"
        table.add_row("patient notified", escape(f"yes, {when}"))
    else:
        table.add_row("patient notified", "no separate notice (the access is in their audit trail)")
    table.add_row("after-the-fact review", "yes" if ob.get("review") else "no")
    console.print()
    console.print(table)


# -------------------------------------------------------------------- commands


@app.command()
def explain(
    input_file: Annotated[Path, typer.Argument(
        metavar="INPUT.json", exists=True, dir_okay=False, readable=True,
        help='OPA input document, bare or as {"input": {...}}.')],
    opa_url: Annotated[str, typer.Option(
        "--opa-url", envvar="HEALTHGOV_OPA_URL",
        help="OPA server; if it does not answer, opa eval runs locally.")] = DEFAULT_OPA_URL,
    local: Annotated[bool, typer.Option(
        "--local", help="Skip the server: evaluate with opa eval on policies/.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the decision document as JSON.")] = False,
) -> None:
    """Show the access decision for INPUT.json: ALLOW/DENY, why, and the obligations."""
    try:
        policy_input = load_input(input_file)
        decision, source = evaluate(policy_input, opa_url, local=local)
    except (PolicyError, json.JSONDecodeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(decision, indent=2, sort_keys=True))
        return
    render(decision, source, policy_input, Console())


@app.command()
def manifest(
    check: Annotated[bool, typer.Option(
        "--check", help="Only check: exit 1 if the manifest is stale.")] = False,
    version: Annotated[str | None, typer.Option(
        "--version", help="Release name to write (default: next YYYY.M.N).")] = None,
) -> None:
    """Refresh policies/healthgov/manifest/data.json (and the policy's vocabulary) after a rule changes."""
    if check and not vocabulary_current():
        typer.echo("policy vocabulary is stale: run `healthgov policy manifest` "
                   "(services/contracts/vocabulary.py changed)", err=True)
        raise typer.Exit(1)
    if not check and write_vocabulary():
        typer.echo(f"policy vocabulary written: {_shown(POLICIES_DIR / VOCABULARY_DATA)}")
    current = read_manifest()
    digest = policy_digest()
    fresh = current.get("digest") == digest and current.get("files") == file_digests()
    if check:
        if not fresh:
            typer.echo(f"policy manifest is stale: run `healthgov policy manifest` "
                       f"(digest {digest[:12]}, manifest {str(current.get('digest'))[:12]})",
                       err=True)
            raise typer.Exit(1)
        typer.echo(f"policy manifest is current: {current['version']}+{digest[:12]}")
        return
    if fresh and version is None:
        typer.echo(f"policy manifest already current: {current['version']}+{digest[:12]}")
        return
    new_version = version or next_version(current.get("version"),
                                          dt.datetime.now(dt.UTC).date())
    written = write_manifest(new_version)
    typer.echo(f"policy manifest written: {written['version']}+{written['digest'][:12]} "
               f"({len(written['files'])} rule files)")


if __name__ == "__main__":
    app(prog_name="healthgov policy")

"""``healthgov policy explain`` on the worked examples, through the opa-eval fallback."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import policy as policy_cli

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "policies" / "examples"

if policy_cli.find_opa_binary() is None and os.environ.get("CI") == "true":
    raise RuntimeError("opa binary missing in CI: run the deploy setup")
pytestmark = pytest.mark.skipif(
    policy_cli.find_opa_binary() is None, reason="opa binary not installed (deploy setup)"
)

runner = CliRunner()


@pytest.fixture
def dead_opa_url() -> str:
    """A URL on a local port nothing listens on: forces the opa-eval fallback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _manifest_version() -> str:
    manifest = json.loads(policy_cli.MANIFEST_PATH.read_text(encoding="utf-8"))
    return f"{manifest['version']}+{manifest['digest'][:12]}"


def test_explain_allow_falls_back_to_opa_eval(dead_opa_url: str) -> None:
    example = EXAMPLES / "clinician_treat" / "input.json"
    result = runner.invoke(policy_cli.app, ["explain", str(example), "--opa-url", dead_opa_url])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ALLOW" in out
    assert "clinician_care_relationship" in out
    assert "HIV" in out  # withheld label, explained
    assert _manifest_version() in out
    assert "local opa eval" in out


def test_explain_deny_names_reason(dead_opa_url: str) -> None:
    example = EXAMPLES / "regulator_read_denied" / "input.json"
    result = runner.invoke(policy_cli.app, ["explain", str(example), "--opa-url", dead_opa_url])
    assert result.exit_code == 0, result.output
    assert "DENY" in result.output
    assert "regulators_read_audit_trail_only" in result.output
    assert "Nothing is disclosed" in result.output


def test_explain_json_is_the_decision_document(dead_opa_url: str) -> None:
    example = EXAMPLES / "law_enforcement_warrant" / "input.json"
    result = runner.invoke(
        policy_cli.app, ["explain", str(example), "--opa-url", dead_opa_url, "--json"]
    )
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert decision == {
        "allow": True,
        "reasons": ["lawful_warrant"],
        "policy_version": _manifest_version(),
        "obligations": {
            "deidentify": "none",
            "redact_labels": ["PSY"],
            "notify_patient": True,
            "notify_after": "2027-02-20T10:00:00Z",
            "review": True,
        },
    }


def test_explain_accepts_bare_input(tmp_path: Path) -> None:
    wrapped = json.loads((EXAMPLES / "insurer_consent" / "input.json").read_text())
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(wrapped["input"]))
    result = runner.invoke(policy_cli.app, ["explain", str(bare), "--local", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["reasons"] == ["insurer_consent"]


def test_explain_rejects_non_object(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    result = runner.invoke(policy_cli.app, ["explain", str(bad), "--local"])
    assert result.exit_code == 2


def test_every_reason_in_the_rules_has_words() -> None:
    """Each reason code the Rego can emit is explained in plain language."""
    pattern = re.compile(r'(?:contains|grant\(|:=)\s*\[?"([a-z][a-z0-9_]*)"')
    emitted: set[str] = set()
    for path in policy_cli.rule_files():
        emitted |= set(pattern.findall(path.read_text(encoding="utf-8")))
    emitted -= {"unversioned"}  # the policy_version fallback, not a reason
    assert {"patient_own_records", "org_suspended", "no_consent"} <= emitted
    assert emitted - set(policy_cli.REASONS) == set()

"""One vocabulary: the codes Python words (services/contracts/vocabulary.py) are the codes the policy uses.

The policy reads its closed sets from ``data.healthgov.vocabulary``, written by
``healthgov policy manifest`` from Python; these tests fail when the data file is
stale, when OPA's sets differ from Python's, when the Rego can emit a reason that
has no wording (or a worded reason no rule emits any more), and when a wording
is not marked for translation.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from services.cli import policy as policy_cli
from services.contracts import vocabulary

REPO = Path(__file__).resolve().parents[3]
VOCABULARY_SOURCE = REPO / "services" / "contracts" / "vocabulary.py"
# Where a reason code stands in the Rego: `deny contains "x"`, `grant("x", …)`, `… := "x"`, `else := ["x"]`.
REASON_IN_REGO = re.compile(r'(?:contains|grant\(|:=)\s*\[?"([a-z][a-z0-9_]*)"')


def _opa_value(query: str) -> Any:
    opa = policy_cli.find_opa_binary()
    assert opa is not None, "opa binary missing: run deploy/setup.sh (make setup)"
    proc = subprocess.run([opa, "eval", "--format", "json", "--data", str(policy_cli.POLICIES_DIR), query],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]


def _rego_reasons() -> set[str]:
    emitted: set[str] = set()
    for path in policy_cli.rule_files():
        if path.suffix == ".rego":
            emitted |= set(REASON_IN_REGO.findall(path.read_text(encoding="utf-8")))
    return emitted - {"unversioned"}  # the policy_version fallback, not a reason


def test_policy_data_is_generated_from_python() -> None:
    data = (policy_cli.POLICIES_DIR / policy_cli.VOCABULARY_DATA).read_text(encoding="utf-8")
    assert json.loads(data) == vocabulary.rego_data(), "run `healthgov policy manifest`"
    assert policy_cli.vocabulary_current()


def test_opa_sets_are_pythons() -> None:
    """What OPA actually evaluates, not just the file: the Rego reads every closed set from the data."""
    got = _opa_value("{"
                     '"purposes": data.healthgov.access.known_purposes, '
                     '"actions": data.healthgov.access.known_actions, '
                     '"labels": data.healthgov.access.sensitive_labels, '
                     '"third_parties": data.healthgov.access.third_party_org_types, '
                     '"org_types": {t | some t, _ in data.healthgov.access.purposes_by_org_type}}')
    assert set(got["purposes"]) == set(vocabulary.PURPOSES)
    assert set(got["actions"]) == set(vocabulary.ACTIONS)
    assert set(got["labels"]) == set(vocabulary.SENSITIVE_LABELS)
    assert set(got["third_parties"]) == set(vocabulary.THIRD_PARTY_ORG_TYPES)
    assert set(got["org_types"]) == set(vocabulary.ORG_TYPES)


def test_every_reason_the_rules_emit_is_worded_and_every_worded_reason_is_emitted() -> None:
    emitted = _rego_reasons()
    assert {"patient_own_records", "org_suspended", "no_consent", "no_matching_rule"} <= emitted
    policy_reasons = set(vocabulary.ALLOW_REASONS) | set(vocabulary.DENY_REASONS)
    assert emitted - policy_reasons == set(), "a reason the Rego emits has no wording"
    assert policy_reasons - emitted == set(), "a worded reason no rule emits any more"


def test_every_fail_closed_reason_is_worded() -> None:
    source = (REPO / "services" / "adapters" / "policy.py").read_text(encoding="utf-8")
    used = set(re.findall(r'fail_closed\("([a-z_]+)"\)', source))
    assert used and used == set(vocabulary.FAIL_CLOSED_REASONS)


def test_every_wording_is_marked_for_translation() -> None:
    """Each wording is an ``N_("…")`` call on a literal, which is what Babel's extractor collects."""
    tree = ast.parse(VOCABULARY_SOURCE.read_text(encoding="utf-8"))
    worded = 0
    tables = [n.value for n in tree.body if isinstance(n, ast.Assign | ast.AnnAssign) and isinstance(n.value, ast.Dict)]
    for table in tables:
        if None in table.keys:  # REASONS = {**ALLOW_REASONS, ...}: a union of the worded tables
            continue
        for value in table.values:
                assert isinstance(value, ast.Call) and isinstance(value.func, ast.Name), ast.unparse(value)
                assert value.func.id == "N_" and isinstance(value.args[0], ast.Constant), ast.unparse(value)
                worded += 1
    expected = sum(len(d) for d in (vocabulary.PURPOSES, vocabulary.ORG_TYPES, vocabulary.SENSITIVE_LABELS,
                                    vocabulary.DEIDENTIFY, vocabulary.AUDIT_KINDS, vocabulary.OWN_AUDIT_KINDS,
                                    vocabulary.DENY_REASONS_TO_PATIENT,
                                    vocabulary.ALLOW_REASONS, vocabulary.DENY_REASONS, vocabulary.FAIL_CLOSED_REASONS))
    assert worded == expected
    assert vocabulary.N_("x") == "x"

"""The Rego suite as part of pytest: strict compile, formatting, tests with coverage."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from services.cli import policy as policy_cli

REPO = Path(__file__).resolve().parents[3]
POLICIES = REPO / "policies"
COVERAGE_THRESHOLD = 95.0

OPA = policy_cli.find_opa_binary()


def _opa(*args: str) -> subprocess.CompletedProcess[str]:
    # A missing binary is a failure, never a skip: `make setup` installs it.
    assert OPA is not None, "opa binary missing: run deploy/setup.sh (make setup)"
    return subprocess.run([OPA, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)


def test_opa_check_strict() -> None:
    proc = _opa("check", "--strict", str(POLICIES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_opa_fmt_clean() -> None:
    proc = _opa("fmt", "--list", "--fail", str(POLICIES))
    assert proc.returncode == 0, f"unformatted Rego (run opa fmt -w policies/):\n{proc.stdout}"


def test_opa_tests_pass() -> None:
    proc = _opa("test", str(POLICIES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_opa_test_coverage() -> None:
    proc = _opa("test", str(POLICIES), "--coverage", "--threshold", str(COVERAGE_THRESHOLD))
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:  # failing tests print a text report instead
        pytest.fail(f"opa test failed:\n{proc.stdout}{proc.stderr}")
    uncovered = {
        name: [(r["start"]["row"], r["end"]["row"]) for r in f.get("not_covered", [])]
        for name, f in report["files"].items()
        if f.get("not_covered")
    }
    assert proc.returncode == 0, (
        f"coverage {report.get('coverage')}% < {COVERAGE_THRESHOLD}%: {uncovered}\n{proc.stderr}"
    )
    assert report["coverage"] >= COVERAGE_THRESHOLD

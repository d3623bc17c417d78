"""The policy manifest names the rules in force: it must match the rule files.

Every decision reports ``policy_version`` = ``<manifest version>+<digest[:12]>``; if a
rule file changes and the manifest does not, audit events would attribute decisions
to the wrong rules. Refresh with ``healthgov policy manifest``
(or ``python -m services.cli.policy manifest``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pytest

from services.cli import policy as policy_cli

REPO = Path(__file__).resolve().parents[3]
POLICIES = REPO / "policies"
MANIFEST = POLICIES / "healthgov" / "manifest" / "data.json"
VOCABULARY = "healthgov/vocabulary/data.json"


def _independent_digest(root: Path) -> str:
    """The digest as documented: sha256 of the sha256sum listing of the rule files and the vocabulary data."""
    rules = sorted(
        [p.relative_to(root).as_posix() for p in root.rglob("*.rego") if not p.name.endswith("_test.rego")]
        + [VOCABULARY] * (root / VOCABULARY).is_file()
    )
    listing = "".join(
        f"{hashlib.sha256((root / r).read_bytes()).hexdigest()}  {r}\n" for r in rules
    )
    return hashlib.sha256(listing.encode()).hexdigest()


def test_manifest_is_current() -> None:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    assert manifest["digest"] == _independent_digest(POLICIES), (
        "policies/ changed but the manifest did not: run `healthgov policy manifest`"
    )
    assert manifest["files"] == policy_cli.file_digests(POLICIES)


def test_manifest_version_shape() -> None:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    assert re.fullmatch(r"\d{4}\.\d{1,2}\.\d+", manifest["version"])


def test_digest_ignores_tests_and_sees_every_rule_change(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.rego").write_text("package a\n\nx := 1\n")
    (tmp_path / "a" / "x_test.rego").write_text("package a_test\n")
    before = policy_cli.policy_digest(tmp_path)
    assert before == _independent_digest(tmp_path)

    (tmp_path / "a" / "x_test.rego").write_text("package a_test\n\ntest_y if true\n")
    assert policy_cli.policy_digest(tmp_path) == before  # tests are not rules

    (tmp_path / "a" / "x.rego").write_text("package a\n\nx := 2\n")
    assert policy_cli.policy_digest(tmp_path) != before

    changed = policy_cli.policy_digest(tmp_path)
    (tmp_path / "a" / "x.rego").rename(tmp_path / "a" / "y.rego")
    assert policy_cli.policy_digest(tmp_path) != changed  # renames count too


def test_write_manifest_round_trip(tmp_path: Path) -> None:
    (tmp_path / "p.rego").write_text("package p\n")
    target = tmp_path / "m" / "data.json"
    written = policy_cli.write_manifest("2026.11.7", tmp_path, target)
    assert json.loads(target.read_text()) == written
    assert written["digest"] == _independent_digest(tmp_path)
    assert written["files"] == {"p.rego": hashlib.sha256(b"package p\n").hexdigest()}


@pytest.mark.parametrize(
    ("current", "today", "expected"),
    [
        ("2026.11.1", dt.date(2026, 11, 30), "2026.11.2"),
        ("2026.11.9", dt.date(2026, 11, 1), "2026.11.10"),
        ("2026.11.3", dt.date(2026, 12, 1), "2026.12.1"),
        ("2026.12.3", dt.date(2027, 1, 5), "2027.1.1"),
        (None, dt.date(2026, 11, 22), "2026.11.1"),
        ("garbage", dt.date(2026, 11, 22), "2026.11.1"),
    ],
)
def test_next_version(current: str | None, today: dt.date, expected: str) -> None:
    assert policy_cli.next_version(current, today) == expected


def test_digest_sees_a_vocabulary_change(tmp_path: Path) -> None:
    """A purpose or action added to the vocabulary changes decisions, so it changes the version."""
    (tmp_path / "p.rego").write_text("package p\n")
    vocab = tmp_path / VOCABULARY
    vocab.parent.mkdir(parents=True)
    vocab.write_text('{"purposes": ["TREAT"]}\n')
    before = policy_cli.policy_digest(tmp_path)
    assert before == _independent_digest(tmp_path)
    vocab.write_text('{"purposes": ["TREAT", "HRESCH"]}\n')
    assert policy_cli.policy_digest(tmp_path) != before
    assert VOCABULARY in policy_cli.file_digests(tmp_path)


def test_manifest_check_fails_on_a_stale_vocabulary(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    monkeypatch.setattr(policy_cli, "vocabulary_json", lambda: '{"purposes": []}\n')
    result = CliRunner().invoke(policy_cli.app, ["manifest", "--check"])
    assert result.exit_code == 1
    assert "vocabulary is stale" in result.output

"""The house rules that the code's shape must keep (import-linter holds the import layers).

Only the audit-log adapter produces to the audit topic: every disclosure and
refusal goes through it (records through its disclosure gate), so a new path
cannot publish an event by hand, or forget to.
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
MAY_NAME_THE_AUDIT_TOPIC = {
    "adapters/audit_log.py",  # the one producer
    "contracts/topics.py",  # where it is defined
    "audit/app.py",  # the audit service consumes it
    "oversight/app.py",  # the oversight service consumes it (and publishes reviews through the adapter)
    "cli/backup.py",  # reads its consumer groups' positions: a backup waits until every acknowledged event is in
}


def _names_audit_topic(path: Path) -> bool:
    tree = ast.parse(path.read_text(), filename=str(path))
    return any((isinstance(node, ast.Name) and node.id == "AUDIT_EVENTS")
               or (isinstance(node, ast.alias) and node.name == "AUDIT_EVENTS")
               or (isinstance(node, ast.Constant) and node.value == "audit.events.v1")
               for node in ast.walk(tree))


def test_only_the_audit_log_adapter_produces_to_the_audit_topic() -> None:
    offenders = sorted(str(p.relative_to(SERVICES)) for p in SERVICES.rglob("*.py")
                       if str(p.relative_to(SERVICES)) not in MAY_NAME_THE_AUDIT_TOPIC and _names_audit_topic(p))
    assert offenders == [], f"publish audit events through services/adapters/audit_log.py: {offenders}"


USE_CASES = ("service.py", "registry.py", "erasure.py", "referrals.py")


def test_records_use_cases_reach_the_broker_only_through_the_gate() -> None:
    """Reads, consents, erasure and referrals hold a gate, never a producer of their own."""
    direct = sorted(name for name in USE_CASES if "producer" in (SERVICES / "records" / name).read_text().lower())
    assert direct == [], f"records use cases that bypass the disclosure gate: {direct}"

"""Tampering through a privileged connection, caught by `healthgov audit verify` from outside."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from services.cli.main import app
from tests.integration.audit.conftest import Server, tamper
from tests.unit.audit.factory import entry


def _fill(server: Server, batches: int = 3, per: int = 10) -> None:
    for _ in range(batches):
        server.svc.log.append([entry() for _ in range(per)])
        server.svc.checkpointer.checkpoint()  # checkpoints at 10, 20, 30


def _verify(server: Server) -> Result:
    return CliRunner().invoke(app, ["audit", "verify", "--url", server.url])


def test_an_intact_log_verifies(server: Server) -> None:
    _fill(server)
    result = _verify(server)
    assert result.exit_code == 0, result.output
    assert "entries: 30  checkpoints: 3" in result.output and "OK" in result.output


def test_an_edited_entry_is_named_by_its_index(server: Server) -> None:
    _fill(server)
    forged = bytes(next(iter(server.svc.log.entries(17, 18))).body).replace(b"TREAT", b"HMARKT")
    tamper(server.db, "audit_entry", "UPDATE audit_entry SET body = :b WHERE idx = 17", b=forged)
    result = _verify(server)
    assert result.exit_code == 1, result.output
    assert "first bad entry: index 17" in result.output
    assert "checkpoint at size 20 no longer matches the entries" in result.output
    assert "size 10 no longer" not in result.output  # what came before the edit still verifies


def test_a_deleted_tail_names_the_checkpoint_that_no_longer_matches(server: Server) -> None:
    _fill(server)
    tamper(server.db, "audit_entry", "DELETE FROM audit_entry WHERE idx >= 25")
    tamper(server.db, "audit_node", "DELETE FROM audit_node WHERE (idx + 1) * power(2, level) > 25")
    result = _verify(server)
    assert result.exit_code == 1, result.output
    assert "checkpoint at size 30 no longer matches: the log has only 25 entries" in result.output
    assert "size 20 no longer" not in result.output


def test_a_rewritten_history_cannot_be_re_signed_without_the_log_key(server: Server) -> None:
    _fill(server, batches=2)
    # Claim a different size under the old signature: it no longer holds.
    signed = server.svc.checkpoints.get(20)
    assert signed is not None
    tamper(server.db, "audit_checkpoint", "UPDATE audit_checkpoint SET note = :n WHERE size = 20",
           n=signed.note.replace("\n20\n", "\n19\n", 1))
    result = _verify(server)
    assert result.exit_code == 1 and "signature does not verify" in result.output, result.output

"""The stack runner reports a component that does not start, with its log tail."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from services.adapters.config import PlatformSettings
from services.cli.stack import Component, ComponentFailed, Stack


def test_a_component_that_dies_fails_with_its_log_tail(tmp_path: Path) -> None:
    stack = Stack(PlatformSettings(state_dir=tmp_path, port_offset=5000))
    stack.prepare_state()
    stack.components["bogus"] = Component(
        name="bogus",
        argv=[sys.executable, "-c", "import sys; print('bogus: cannot bind 127.0.0.1:1'); sys.exit(3)"],
        healthy=lambda: False, url="")
    with pytest.raises(ComponentFailed) as failed:
        stack.start("bogus", timeout_s=20)
    assert failed.value.name == "bogus"
    assert "cannot bind" in failed.value.tail
    assert stack.pid("bogus") is None


def test_a_component_that_never_gets_healthy_times_out_and_is_reported(tmp_path: Path) -> None:
    stack = Stack(PlatformSettings(state_dir=tmp_path, port_offset=5000))
    stack.prepare_state()
    stack.components["sleepy"] = Component(
        name="sleepy", argv=[sys.executable, "-c", "print('starting', flush=True); import time; time.sleep(60)"],
        healthy=lambda: False, url="")
    try:
        with pytest.raises(ComponentFailed) as failed:
            stack.start("sleepy", timeout_s=2)
        assert "starting" in failed.value.tail
    finally:
        stack.stop("sleepy")
    assert stack.pid("sleepy") is None


def test_status_reports_every_component_down_on_an_empty_state_dir(tmp_path: Path) -> None:
    stack = Stack(PlatformSettings(state_dir=tmp_path, port_offset=5000))
    status = stack.status()
    assert set(status) == {"kafka", "opa", "mail", "portal", "ingest", "records", "audit", "oversight", "witness"}
    assert not any(s["healthy"] for s in status.values())
    assert status["records"]["url"] == "http://127.0.0.1:13002"


def test_production_runs_no_witness_of_its_own(tmp_path: Path) -> None:
    # A witness must be an independent party: only dev and test stacks bring a demo one.
    stack = Stack(PlatformSettings(state_dir=tmp_path, port_offset=5000, env="prod"))
    assert "witness" not in stack.status()
    assert "mail" not in stack.status()  # nor a mail sink: production mails through the operator's relay


def test_a_component_started_again_runs_with_the_settings_the_stack_came_up_with(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart from another shell (the supervisor, an operator, a test) must not drop the stack's settings."""
    stack = Stack(PlatformSettings(state_dir=tmp_path, port_offset=5000))
    stack.prepare_state()
    monkeypatch.setenv("HEALTHGOV_TRACE_EXPORTER", "file")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "chosen-at-up")
    stack.record_environment()
    assert (stack.run_dir / "environment.json").stat().st_mode & 0o077 == 0  # may hold a metrics token
    monkeypatch.delenv("HEALTHGOV_TRACE_EXPORTER")  # the shell that starts it again has neither
    monkeypatch.setenv("OTEL_SERVICE_NAME", "the-restarters-own")
    seen = tmp_path / "seen.txt"
    stack.components["echo"] = Component(
        name="echo", argv=[sys.executable, "-c", "import os, pathlib; pathlib.Path(os.environ['OUT']).write_text("
                                                 "os.environ.get('HEALTHGOV_TRACE_EXPORTER', '-') + ' ' + "
                                                 "os.environ['OTEL_SERVICE_NAME']); import time; time.sleep(60)"],
        healthy=lambda: seen.exists(), url="", env={"OUT": str(seen)})
    try:
        stack.start("echo", timeout_s=20)
    finally:
        stack.stop("echo")
    assert seen.read_text() == "file chosen-at-up"


def test_an_up_that_completes_a_running_stack_keeps_its_recorded_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`stack up` after a crash starts what died with the settings of the stack, not of the shell it runs in."""
    stack = Stack(PlatformSettings(state_dir=tmp_path, port_offset=5000))
    stack.prepare_state()
    monkeypatch.setenv("HEALTHGOV_TRACE_EXPORTER", "file")
    stack.record_environment()
    sleeper = Component(name="sleeper", argv=[sys.executable, "-c", "import time; time.sleep(60)"],
                        healthy=lambda: True, url="")
    stack.components = {"sleeper": sleeper}
    stack.start("sleeper")
    try:
        monkeypatch.delenv("HEALTHGOV_TRACE_EXPORTER")
        stack.up()  # finds sleeper running: keeps what was recorded
        assert stack._recorded_env().get("HEALTHGOV_TRACE_EXPORTER") == "file"
    finally:
        stack.stop("sleeper")
    stack.up()  # nothing running: a fresh start records the environment it is given
    try:
        assert "HEALTHGOV_TRACE_EXPORTER" not in stack._recorded_env()
    finally:
        stack.stop("sleeper")

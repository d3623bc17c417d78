"""The supervisor's decisions, on a stack of fake processes: when it restarts, when it waits, how it backs off."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from services.cli.supervisor import MAX_BACKOFF_S, Supervisor, component_lock, stop_supervisor


class FakeStack:
    """Components that are up or down as the test says; ``start`` may be told to fail."""

    def __init__(self, run_dir: Path, names: tuple[str, ...] = ("kafka", "records", "audit")) -> None:
        self.run_dir = run_dir
        self.components: dict[str, object] = dict.fromkeys(names)
        self.pids = {name: 100 + i for i, name in enumerate(names)}
        self.failing: set[str] = set()
        self.starts: list[str] = []

    def pid(self, name: str) -> int | None:
        return self.pids.get(name)

    def start(self, name: str, timeout_s: float = 90) -> None:
        self.starts.append(name)
        if name in self.failing:
            raise RuntimeError(f"{name} did not become healthy")
        self.pids[name] = 1000 + len(self.starts)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path) -> tuple[FakeStack, Supervisor, Clock, list[str]]:
    stack, clock, lines = FakeStack(tmp_path), Clock(), []
    return stack, Supervisor(stack, log=lines.append, clock=clock), clock, lines


def test_nothing_happens_while_everything_runs(tmp_path: Path) -> None:
    stack, sup, _clock, lines = make(tmp_path)
    for _ in range(3):
        assert sup.check() == []
    assert stack.starts == [] and lines == []


def test_a_crashed_component_is_restarted_on_the_second_sighting(tmp_path: Path) -> None:
    stack, sup, _clock, lines = make(tmp_path)
    del stack.pids["records"]
    assert sup.check() == []  # seen down once: perhaps an operator's stop-then-start
    assert sup.check() == ["records"]
    assert stack.starts == ["records"] and sup.restarts["records"] == 1
    assert any("records is up again" in line for line in lines)
    assert sup.check() == []


def test_a_component_started_by_someone_else_meanwhile_is_left_alone(tmp_path: Path) -> None:
    stack, sup, _clock, _lines = make(tmp_path)
    del stack.pids["audit"]
    sup.check()
    stack.pids["audit"] = 4242  # `stack restart audit` finished between two checks
    assert sup.check() == [] and stack.starts == []
    del stack.pids["audit"]
    assert sup.check() == []  # a fresh crash is again first seen, not restarted at once


def test_a_component_that_keeps_failing_is_retried_with_growing_delays(tmp_path: Path) -> None:
    stack, sup, clock, lines = make(tmp_path)
    del stack.pids["kafka"]
    stack.failing.add("kafka")
    sup.check()
    tries = []
    for _ in range(400):
        clock.now += 0.5
        before = len(stack.starts)
        sup.check()
        if len(stack.starts) > before:
            tries.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(tries)]
    assert gaps[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(gaps) == MAX_BACKOFF_S
    assert any("next try in" in line for line in lines)
    stack.failing.clear()
    clock.now += MAX_BACKOFF_S
    assert sup.check() == ["kafka"]
    assert sup.backoff["kafka"].failures == 0


def test_the_component_lock_serialises_a_restart_and_the_supervisor(tmp_path: Path) -> None:
    order: list[str] = []
    with component_lock(tmp_path, "records"):
        t = threading.Thread(target=lambda: _locked(tmp_path, order))
        t.start()
        t.join(0.3)
        assert t.is_alive(), "a second holder got the lock while the first held it"
        order.append("first")
    t.join(5)
    assert order == ["first", "second"]


def _locked(run_dir: Path, order: list[str]) -> None:
    with component_lock(run_dir, "records"):
        order.append("second")


def test_stop_supervisor_without_one_running_is_harmless(tmp_path: Path) -> None:
    stop_supervisor(tmp_path)
    (tmp_path / "supervisor.pid").write_text("999999999")
    stop_supervisor(tmp_path)
    assert not (tmp_path / "supervisor.pid").exists()


@pytest.mark.parametrize("content", ["", "garbage"])
def test_a_damaged_pidfile_is_removed(tmp_path: Path, content: str) -> None:
    (tmp_path / "supervisor.pid").write_text(content)
    stop_supervisor(tmp_path)
    assert not (tmp_path / "supervisor.pid").exists()

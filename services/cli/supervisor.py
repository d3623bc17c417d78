"""A supervisor for the local platform: a component that crashes is started again by itself.

``healthgov stack supervise`` watches every component of a running stack and
restarts one whose process has exited, with exponential back-off when it keeps
failing, so an operator of a single machine does not have to notice a crash
before patients and hospitals do. It does not own the stack: stopping the
supervisor leaves every component running (``make run`` stops them through
``stack down``, which stops the supervisor first).

Two things keep it from fighting an operator:
- a component is restarted only after it has been seen down on two checks in a
  row, so a ``stack restart`` in progress (stop, then start) is not raced;
- every stop-and-start of a component, here and in ``stack restart``, holds that
  component's lock file in the run directory, so two starts never overlap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

PIDFILE = "supervisor.pid"
MAX_BACKOFF_S = 30.0


class Supervised(Protocol):
    """What the supervisor needs of a stack (``services.cli.stack.Stack``)."""

    run_dir: Path
    components: dict[str, object]

    def pid(self, name: str) -> int | None: ...

    def start(self, name: str, timeout_s: float = 90) -> None: ...


@contextlib.contextmanager
def component_lock(run_dir: Path, name: str) -> Iterator[None]:
    """Hold ``name``'s lock while stopping or starting it (released if the holder dies)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / f"{name}.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Backoff:
    """When a component may be tried again after ``failures`` failed starts in a row."""

    failures: int = 0
    not_before: float = 0.0

    def failed(self, now: float) -> float:
        self.failures += 1
        delay = min(MAX_BACKOFF_S, 2.0 ** (self.failures - 1))
        self.not_before = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.not_before = 0.0


class Supervisor:
    """Restart crashed components of ``stack`` until told to stop."""

    def __init__(self, stack: Supervised, log: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stack = stack
        self.log = log
        self.clock = clock
        self.backoff = {name: Backoff() for name in stack.components}
        self.seen_down: set[str] = set()
        self.restarts: dict[str, int] = dict.fromkeys(stack.components, 0)

    def check(self) -> list[str]:
        """One pass over the components; return those restarted in it."""
        restarted = []
        for name in self.stack.components:
            if self.stack.pid(name) is not None:
                self.seen_down.discard(name)
                continue
            if name not in self.seen_down:  # first sighting: maybe an operator's restart in progress
                self.seen_down.add(name)
                continue
            backoff = self.backoff[name]
            if self.clock() < backoff.not_before:
                continue
            if self._restart(name):
                restarted.append(name)
        return restarted

    def _restart(self, name: str) -> bool:
        started = self.clock()
        with component_lock(self.stack.run_dir, name):
            if self.stack.pid(name) is not None:  # someone else started it while we waited for the lock
                self.seen_down.discard(name)
                return False
            self.log(f"{_now()} {name} is down; starting it")
            try:
                self.stack.start(name)
            except Exception as exc:  # a failed start is retried later, whatever its cause
                delay = self.backoff[name].failed(self.clock())
                self.log(f"{_now()} {name} failed to start ({type(exc).__name__}); next try in {delay:.0f}s")
                return False
        self.backoff[name].succeeded()
        self.seen_down.discard(name)
        self.restarts[name] += 1
        self.log(f"{_now()} {name} is up again after {self.clock() - started:.1f}s")
        return True

    def run(self, interval_s: float, stopping: Callable[[], bool]) -> None:
        while not stopping():
            self.check()
            time.sleep(interval_s)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_pidfile(run_dir: Path) -> Path:
    path = run_dir / PIDFILE
    path.write_text(str(os.getpid()))
    return path


def stop_supervisor(run_dir: Path, timeout_s: float = 10) -> None:
    """Stop a supervisor of this stack, if one runs, before its components are stopped."""
    path = run_dir / PIDFILE
    if not path.exists():
        return
    try:
        pid = int(path.read_text().strip() or 0)
    except ValueError:
        pid = 0
    if pid > 0 and pid != os.getpid():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and _running(pid):
                time.sleep(0.1)
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a supervisor started by another process may await its parent's reaping)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")

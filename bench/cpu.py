"""CPU time per component of the running platform, from /proc: where a request's cost lands.

A read costs CPU in more places than the service that answers it: OPA
decides, the broker stores the audit event, the audit service appends it to
the Merkle log, PostgreSQL runs the queries of both. Latency alone cannot
tell which of them to make cheaper; this clock can.

Components are found from the stack's pid files (``$HEALTHGOV_STATE_DIR/run``)
and PostgreSQL from its postmaster (every backend is a child of it).
"""

from __future__ import annotations

import os
from pathlib import Path

from services.adapters.config import REPO_ROOT, PlatformSettings

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """user+system seconds of one process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return out


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and every descendant still alive (worker pools, database backends)."""
    return _cpu_s(pid) + sum(_tree_cpu_s(c) for c in _children(pid))


def component_pids(settings: PlatformSettings) -> dict[str, int]:
    """The running components by name, from the pid files ``healthgov up`` writes (a torn one is skipped)."""
    pids: dict[str, int] = {}
    for f in sorted((Path(settings.state_dir) / "run").glob("*.pid")):
        try:
            pids[f.stem] = int(f.read_text().split()[0])
        except (ValueError, IndexError):
            continue
    return pids


def _postmaster(port: str) -> int | None:
    pointer = REPO_ROOT / ".cache" / f"pg-dir-{port}"
    try:
        return int((Path(pointer.read_text().strip()) / "data" / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


class ComponentClock:
    """Snapshots the CPU seconds of every component; reports the difference per request."""

    def __init__(self, settings: PlatformSettings | None = None) -> None:
        settings = settings or PlatformSettings()
        self.pids = component_pids(settings)
        self.postmaster = _postmaster(os.environ.get("HEALTHGOV_PG_PORT", "55432"))
        self._start: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        # Children count with their parent (ingest's validation workers, PostgreSQL's backends); one
        # that ends within the phase takes its CPU with it, so phases should keep their processes.
        out = {name: _tree_cpu_s(pid) for name, pid in self.pids.items()}
        if self.postmaster is not None:
            out["postgres"] = _tree_cpu_s(self.postmaster)
        return out

    def start(self) -> None:
        self._start = self.sample()

    def per_request(self, requests: int, unit: float = 1000.0) -> dict[str, float]:
        """CPU time per request since ``start`` (milliseconds; ``unit=1e6`` for microseconds), by component."""
        end = self.sample()
        return {name: round((end[name] - self._start.get(name, 0.0)) / max(requests, 1) * unit, 2)
                for name in end if end[name] - self._start.get(name, 0.0) > 0}

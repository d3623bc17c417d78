"""Peak resident memory of every process of the running platform, sampled from /proc while a benchmark runs.

A process's own peak (``VmHWM``) would also count its start-up, so this samples
``VmRSS`` twice a second and keeps each process's highest: the peak under the
benchmark's load. Child processes (ingest's validation workers) are sampled
one by one, since a bound on memory is a bound per process.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cpu import _children, component_pids

from services.adapters.config import PlatformSettings


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def _kind(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return "child"
    text = b" ".join(argv).decode(errors="replace")
    if "resource_tracker" in text:
        return "resource tracker"
    if "spawn_main" in text:
        return "validation worker"
    return "child"


class RssPeaks:
    """Samples every component (and each of its children) until stopped; ``peaks`` by process name."""

    def __init__(self, settings: PlatformSettings | None = None, interval_s: float = 0.5) -> None:
        settings = settings or PlatformSettings()
        self.pids = component_pids(settings)
        self.interval_s = interval_s
        self.peaks: dict[str, float] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-peaks", daemon=True)

    def _name(self, parent: str, pid: int) -> str:
        if pid not in self._names:
            kind = _kind(pid)
            same = sum(1 for n in self._names.values() if n.startswith(f"{parent} {kind}"))
            self._names[pid] = f"{parent} {kind} {same + 1}"
        return self._names[pid]

    def sample(self) -> None:
        for name, pid in self.pids.items():
            for label, p in [(name, pid), *((self._name(name, c), c) for c in _children(pid))]:
                rss = _rss_mb(p)
                if rss is not None and rss > self.peaks.get(label, 0.0):
                    self.peaks[label] = rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> RssPeaks:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
